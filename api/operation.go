package api

import (
	"encoding/json"
	"time"
)

// Operation statuses.
const (
	OpPending   = "pending"
	OpRunning   = "running"
	OpSucceeded = "succeeded"
	OpFailed    = "failed"
)

// Operation tracks long work started by a request that answered 202.
type Operation struct {
	ID          string    `json:"id"`
	Project     string    `json:"project,omitempty"`
	Kind        string    `json:"kind"`
	Description string    `json:"description"`
	Status      string    `json:"status"`
	Progress    int       `json:"progress"`
	Resource    string    `json:"resource"`
	Actor       string    `json:"actor"`
	Error       string    `json:"error,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Done reports whether the operation has ended.
func (o *Operation) Done() bool { return o.Status == OpSucceeded || o.Status == OpFailed }

// Event is one change in the cloud, as streamed by GET /v1/events.
// ID is the store revision at which it happened: resuming from an ID gives
// every later event once.
type Event struct {
	ID       int64           `json:"id"`
	Time     time.Time       `json:"time"`
	Type     string          `json:"type"`
	Action   string          `json:"action"`
	Project  string          `json:"project,omitempty"`
	Resource string          `json:"resource"`
	Actor    string          `json:"actor"`
	Object   json.RawMessage `json:"object,omitempty"`
}
