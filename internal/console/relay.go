package console

import (
	"context"
	"encoding/json"
	"strings"

	"github.com/coder/websocket"
)

// Relay passes a console's messages between the user and the agent's end
// until either ends, then closes both: the user's resizes (checked) and
// input to the agent; the agent's output, and its exit or error (checked),
// to the user. A user who leaves closes the agent's end normally (the
// agent then ends the console); an agent whose connection breaks leaves
// the user an error message.
func Relay(ctx context.Context, user, agent *websocket.Conn) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer user.CloseNow()
	defer agent.CloseNow()
	go keepAlive(ctx, user)
	go keepAlive(ctx, agent)
	userGone := make(chan struct{})
	go func() {
		defer close(userGone)
		for {
			typ, b, err := user.Read(ctx)
			if err != nil {
				agent.Close(websocket.StatusNormalClosure, "the user left")
				return
			}
			if typ == websocket.MessageText {
				m, err := ParseResize(b)
				if err != nil {
					user.Close(websocket.StatusInvalidFramePayloadData, reason(err))
					agent.Close(websocket.StatusNormalClosure, "the user left")
					return
				}
				b, _ = json.Marshal(m)
			}
			if write(ctx, agent, typ, b) != nil {
				return
			}
		}
	}()
	for {
		typ, b, err := agent.Read(ctx)
		if err != nil {
			select {
			case <-userGone:
			default:
				if websocket.CloseStatus(err) == websocket.StatusNormalClosure {
					user.Close(websocket.StatusNormalClosure, "")
				} else {
					end(ctx, user, errorMessage("the connection to the instance's host broke off"))
				}
			}
			return
		}
		if typ == websocket.MessageText {
			m, err := parseEnd(b)
			if err != nil {
				m = errorMessage("the instance's host broke the console protocol")
			}
			end(ctx, user, m)
			return
		}
		if write(ctx, user, typ, b) != nil {
			return
		}
	}
}

// write sends one message within WriteTimeout.
func write(ctx context.Context, c *websocket.Conn, typ websocket.MessageType, b []byte) error {
	wctx, cancel := context.WithTimeout(ctx, WriteTimeout)
	defer cancel()
	return c.Write(wctx, typ, b)
}

// reason is err as a close frame's reason (at most 123 bytes).
func reason(err error) string {
	s := err.Error()
	if len(s) > 123 {
		s = s[:123]
	}
	return strings.ToValidUTF8(s, "") // whole runes: drop a cut one
}
