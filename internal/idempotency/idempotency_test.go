package idempotency

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

func TestDoneAndAnswer(t *testing.T) {
	if ops := Done(context.Background(), map[string]int{"a": 1}); ops != nil {
		t.Fatalf("a request without a key completes nothing: %v", ops)
	}
	ctx := WithClaim(context.Background(), Claim{Key: Prefix + "k", BodyHash: "h", CreatedAt: time.Unix(1, 0)})
	type obj struct {
		Name     string `json:"name"`
		Revision int64  `json:"revision"`
		Nested   struct {
			Revision int64 `json:"revision"`
		} `json:"nested"`
		Note string `json:"note"`
	}
	if Completed(ctx) {
		t.Fatal("a claim is completed before Done")
	}
	ops := Done(ctx, obj{Name: "a<b>", Note: "x"})
	if !Completed(ctx) {
		t.Fatal("Done does not mark the claim completed: the middleware would write the answer twice")
	}
	if len(ops) != 1 || ops[0].Key != Prefix+"k" {
		t.Fatalf("ops = %+v", ops)
	}
	var rec Record
	if err := json.Unmarshal(ops[0].Value, &rec); err != nil || rec.Pending || rec.Status != 201 || rec.BodyHash != "h" {
		t.Fatalf("record = %+v %v", rec, err)
	}
	got := string(rec.Answer(42))
	want := `{"name":"a<b>","revision":42,"nested":{"revision":0},"note":"x"}` + "\n"
	if got != want {
		t.Fatalf("answer = %q, want %q", got, want)
	}
	plain := Record{Body: []byte(`{"revision":7}`)}
	if string(plain.Answer(42)) != `{"revision":7}` {
		t.Fatal("a record kept by the middleware is replayed as kept")
	}
}
