// Package atomicfile replaces files whole: readers (and a process that
// restarts after a crash) see the old content or the new, never half.
package atomicfile

import "os"

// Write writes data to path through a temporary file beside it and a
// rename, with the given mode.
func Write(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	// WriteFile keeps the mode of a file left by an earlier attempt.
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
