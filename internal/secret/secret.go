// Package secret makes random secrets and the hashes kumo stores instead
// of them (tokens, agent credentials, join tokens).
package secret

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
)

// Hex returns n random bytes in hex.
func Hex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Hash is the SHA-256 of s in hex. Secrets are high-entropy random
// strings, so a fast hash is enough (passwords use bcrypt).
func Hash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
