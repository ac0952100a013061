package driver

import (
	"context"
	"io"

	"github.com/kumocloud/kumo/api"
)

var (
	_ Migrator     = (*combined)(nil)
	_ LiveMigrator = (*combined)(nil)
)

// featureFor is the optional feature of the driver of an instance type
// (what receives a migration: the instance is not here yet).
func featureFor[F any](c *combined, typ string) (F, error) {
	d, err := c.forType(typ)
	if err != nil {
		var none F
		return none, err
	}
	return Feature[F](d)
}

func (c *combined) SendCold(ctx context.Context, id string, w io.Writer) (int64, error) {
	m, err := featureOf[Migrator](c, id)
	if err != nil {
		return 0, err
	}
	return m.SendCold(ctx, id, w)
}

func (c *combined) ReceiveCold(ctx context.Context, s Spec, r io.Reader) error {
	m, err := featureFor[Migrator](c, s.Type)
	if err != nil {
		return err
	}
	return m.ReceiveCold(ctx, s, r)
}

func (c *combined) LiveSend(ctx context.Context, id string, t Tunnel, opt LiveOptions, progress func(api.MigrationStats)) (api.MigrationStats, error) {
	m, err := featureOf[LiveMigrator](c, id)
	if err != nil {
		return api.MigrationStats{}, err
	}
	return m.LiveSend(ctx, id, t, opt, progress)
}

func (c *combined) LiveReceive(ctx context.Context, s Spec, t Tunnel) error {
	m, err := featureFor[LiveMigrator](c, s.Type)
	if err != nil {
		return err
	}
	return m.LiveReceive(ctx, s, t)
}

func (c *combined) LiveAbort(ctx context.Context, id string) error {
	m, err := featureOf[LiveMigrator](c, id)
	if err != nil {
		return err
	}
	return m.LiveAbort(ctx, id)
}

var _ LiveCanceler = (*combined)(nil)

// LiveCancel is the LiveCanceler of the instance's driver; one that has
// none leaves nothing running once its caller is gone.
func (c *combined) LiveCancel(ctx context.Context, id string) error {
	d, err := c.owner(id)
	if err != nil {
		return err
	}
	if lc, ok := d.(LiveCanceler); ok {
		return lc.LiveCancel(ctx, id)
	}
	return nil
}
