// Package store is kumo's state store: the one place desired state lives.
//
// The model is etcd's: keys in one ordered space, each with a revision taken
// from a global counter; every write is either create-if-absent or
// compare-and-swap on the revision last read, so read-modify-write races turn
// into ErrConflict and a retry instead of a lost update. Multi-key invariants
// (quota usage, unique allocations) are kept with Txn.
//
// Implementations: etcdstore (embedded or remote etcd v3; production) and
// memstore (in memory; unit tests). storetest is the conformance suite both
// pass. Packages own their key prefixes; no package reads another's keys.
package store

import (
	"context"
	"errors"
)

// Sentinel errors. Callers test with errors.Is.
var (
	// ErrNotFound: the key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: Create found the key already there.
	ErrExists = errors.New("already exists")
	// ErrConflict: a revision condition failed (the object changed since it was read).
	ErrConflict = errors.New("revision conflict")
	// ErrCompacted: Watch or List was asked for history the store no
	// longer keeps.
	ErrCompacted = errors.New("revision compacted")
)

// KV is one stored key with its value and revisions.
type KV struct {
	Key            string
	Value          []byte
	Revision       int64 // revision of the last write to this key
	CreateRevision int64 // revision at which the key was created
}

// OpKind says what an Op does.
type OpKind int

// Op kinds.
const (
	OpPut OpKind = iota
	OpDelete
)

// Op is one write inside a transaction.
type Op struct {
	Kind  OpKind
	Key   string
	Value []byte
}

// Put writes value at key.
func Put(key string, value []byte) Op { return Op{Kind: OpPut, Key: key, Value: value} }

// Del deletes key (no error if absent).
func Del(key string) Op { return Op{Kind: OpDelete, Key: key} }

// Cond is a precondition of a transaction on one key's revision.
// Revision 0 means the key must not exist.
type Cond struct {
	Key      string
	Revision int64
}

// Absent requires key not to exist.
func Absent(key string) Cond { return Cond{Key: key} }

// At requires key to be at exactly revision rev.
func At(key string, rev int64) Cond { return Cond{Key: key, Revision: rev} }

// Page asks for part of a listing: keys strictly after After, at most Limit
// of them (0 = all), as the keys were at Revision (0 = now). The pages of
// one listing pass the first page's revision, so the whole listing is one
// consistent picture however many writes happen between pages (reading at
// a revision the store compacted away is ErrCompacted).
type Page struct {
	After    string
	Limit    int
	Revision int64
}

// ListResult is a page of a listing, taken at one store revision.
type ListResult struct {
	KVs      []KV
	More     bool  // more keys follow the last one returned
	Revision int64 // store revision the listing was read at
}

// EventType says whether a key was written or deleted.
type EventType int

// Watch event types.
const (
	EventPut EventType = iota
	EventDelete
)

// WatchEvent is one change seen by Watch. A non-nil Err ends the stream.
type WatchEvent struct {
	Type EventType
	KV   KV // for deletes, Key and Revision (the deletion's) only
	// RevisionEnd marks the last event (under the watched prefix) of its
	// revision: a transaction's changes arrive together, and a consumer
	// that publishes "seen up to revision R" must wait for it.
	RevisionEnd bool
	Err         error
}

// MaxTxnOps is the most operations, and the most conditions, one
// transaction may hold (embedded etcd's default).
const MaxTxnOps = 128

// Store is the contract every state store implements.
type Store interface {
	// Get returns the key or ErrNotFound.
	Get(ctx context.Context, key string) (KV, error)
	// List returns keys with the prefix, in key order, one page at a time.
	List(ctx context.Context, prefix string, page Page) (ListResult, error)
	// Create writes key only if it does not exist (else ErrExists) and
	// returns the new revision.
	Create(ctx context.Context, key string, value []byte) (int64, error)
	// Update writes key only if it is still at revision rev (else
	// ErrConflict; ErrNotFound if it is gone) and returns the new revision.
	Update(ctx context.Context, key string, value []byte, rev int64) (int64, error)
	// Delete removes key; with rev > 0 only if it is still at that revision.
	// ErrNotFound if absent.
	Delete(ctx context.Context, key string, rev int64) error
	// Txn applies all ops atomically if every condition holds, else returns
	// ErrConflict and writes nothing. It returns the revision of the write.
	// A transaction holds at most MaxTxnOps operations and as many
	// conditions (etcd's limit); a larger one is refused whole.
	Txn(ctx context.Context, conds []Cond, ops []Op) (int64, error)
	// Watch streams changes to keys with the prefix, starting at revision
	// fromRev (0 = from now). The channel closes when ctx ends or after an
	// event carrying Err.
	Watch(ctx context.Context, prefix string, fromRev int64) <-chan WatchEvent
	// Revision returns the store's current revision.
	Revision(ctx context.Context) (int64, error)
	// Close releases the store.
	Close() error
}
