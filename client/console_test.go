package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestConsoleLeftReadsEOF: a Read cut short by this side's own Close ends
// with io.EOF, even when the server never answers the close handshake
// (the read then fails on a closed connection, which is not an error of
// the console: `kumo instance console` exited 1 that way).
func TestConsoleLeftReadsEOF(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ws.Write(r.Context(), websocket.MessageBinary, []byte("hello"))
		<-release // never reads: the close handshake goes unanswered
		ws.CloseNow()
	}))
	defer srv.Close()
	defer close(release)
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	con := &Console{ws: ws, ctx: ctx}
	got := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, con)
		got <- err
	}()
	con.Close()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("reading a console this side left: %v, want the end (nil from io.Copy)", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the read did not end after Close")
	}
	if errors.Is(con.Close(), io.EOF) {
		t.Fatal("a second Close returned io.EOF")
	}
}
