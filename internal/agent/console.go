package agent

import (
	"context"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/console"
	"github.com/kumocloud/kumo/internal/driver"
)

// console joins a console session to the instance's console: the agent
// opens its end of the session (a WebSocket speaking the server's part
// of the console protocol) and hands it to the driver as the user's
// terminal; how the console ended (a shell's exit code, an error) is the
// session's last message.
func (sj *sessionJob) console(ctx context.Context, s api.Session) {
	ws, err := sj.src.Console(ctx, s.ID)
	if err != nil {
		sj.log.Warn("console stream", "session", s.ID, "err", err)
		return
	}
	t := console.NewTerminal(ctx, ws)
	cs, err := driver.Feature[driver.Consoler](sj.d)
	if err != nil {
		t.End(driver.NoExit, err)
		return
	}
	t.End(cs.Console(ctx, s.InstanceID, s.Console, t))
}
