package compute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/errs"
	"github.com/kumocloud/kumo/internal/events"
	"github.com/kumocloud/kumo/internal/flavor"
	"github.com/kumocloud/kumo/internal/hosts"
	"github.com/kumocloud/kumo/internal/idempotency"
	"github.com/kumocloud/kumo/internal/network"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/reqctx"
	"github.com/kumocloud/kumo/internal/scheduler"
	"github.com/kumocloud/kumo/internal/store"
	"github.com/kumocloud/kumo/internal/validate"
	"github.com/kumocloud/kumo/internal/volumes"
)

const (
	instancesPrefix = "/instances/"
	// DONE instances move here, by project, name and id, so names can be
	// used again and live lists stay short; history is kept.
	archivePrefix = "/archive/instances/"
	// maxHistory bounds a record (etcd values are limited to 1.5 MiB);
	// metering reads the history, so it is generous.
	maxHistory = 5000
)

func instanceKey(project, name string) string { return instancesPrefix + project + "/" + name }

func archiveKey(project, name, id string) string {
	return archivePrefix + project + "/" + name + "/" + id
}

func instanceURL(project, name string) string {
	return "/v1/projects/" + project + "/instances/" + name
}

// record is what is stored: the API object plus its history.
type record struct {
	api.Instance
	History []api.HistoryRecord `json:"history"`
	// Nesting is the flavor's, copied at create like its size.
	Nesting bool `json:"nesting,omitempty"`
	// Rehome is the lost host an HA instance is being recreated away from
	// (ha.go): until it is placed again it has no home.
	Rehome string `json:"rehome,omitempty"`
	// LastMigration is the instance's last migration once it has ended
	// (migrations.go): how it went, for whoever waits on it.
	LastMigration *api.Migration `json:"last_migration,omitempty"`
	// Boot is the VM's boot volume (boot.go), if it has one.
	Boot *bootVolume `json:"boot,omitempty"`
	// MigVolumes are the volumes its migration in progress carries
	// (migrate_volumes.go).
	MigVolumes []api.MigrationVolume `json:"migration_volumes,omitempty"`
	// NewVolumes are the other volumes made with it on its host (a
	// restore from an instance backup): its PROLOG waits for them.
	NewVolumes []string `json:"new_volumes,omitempty"`
	// RootBackup is the volume backup a restored container's root
	// filesystem is made from (rootbackup.go).
	RootBackup string `json:"root_backup,omitempty"`
}

func (r *record) api(rev int64) api.Instance {
	in := r.Instance
	in.Home = r.home()
	in.Revision = rev
	in.Actions = Allowed(in.State)
	return in
}

// event is the event of the record's change, for the transaction that
// writes it: the instance as it is now, under its state's name.
func (r *record) event(ctx context.Context) store.Op {
	return events.Op(ctx, "instance", strings.ToLower(string(r.State)), r.Project, instanceURL(r.Project, r.Name), r.api(0))
}

// home is the host holding the instance's state and disks: the one it was
// last placed on (records written before Home existed have only their
// placements to say so). An instance never placed has none.
func (r *record) home() string {
	if r.Rehome != "" {
		return ""
	}
	if r.Home != "" {
		return r.Home
	}
	if n := len(r.Placements); n > 0 {
		return r.Placements[n-1].Host
	}
	return ""
}

// clone deep-copies a record, so a change never writes through to the
// cache's copy.
func (r *record) clone() record {
	c := *r
	c.History = append([]api.HistoryRecord(nil), r.History...)
	c.Placements = append([]api.Placement(nil), r.Placements...)
	c.NICs = append([]api.InstanceNIC(nil), r.NICs...)
	c.Actions = nil
	if r.Migration != nil {
		m := *r.Migration
		c.Migration = &m
	}
	return c
}

// transition moves the record to a new state at time t and records it.
func (r *record) transition(t time.Time, to api.State, host, actor, reason string) {
	from := r.State
	if host != "" && host != r.Host {
		r.Placements = append(r.Placements, api.Placement{Host: host, Start: t})
		r.Host, r.Home, r.Rehome = host, host, ""
	}
	if !onHost(to) && r.Host != "" && onHost(from) {
		if n := len(r.Placements); n > 0 && r.Placements[n-1].End.IsZero() {
			r.Placements[n-1].End = t
		}
	}
	seq := 1
	if n := len(r.History); n > 0 {
		seq = r.History[n-1].Seq + 1
	}
	r.History = append(r.History, api.HistoryRecord{Seq: seq, Time: t, From: from, To: to, Host: r.Host, Actor: actor, Reason: reason})
	if len(r.History) > maxHistory {
		r.History = r.History[len(r.History)-maxHistory:]
	}
	r.State, r.Reason, r.UpdatedAt, r.Unplaceable = to, reason, t, false
	if to == api.StateRunning {
		// Made and attached: a later PROLOG (a restart elsewhere) has
		// nothing of them to wait for, and one since detached would be
		// waited for in vain.
		r.NewVolumes = nil
	}
	// Host is where it holds resources; Home, where its state stays.
	if to == api.StateStopped || to == api.StatePending {
		r.Host = ""
	}
}

// charge is what an instance counts against its project's quota.
func charge(size api.Size, sign int64) api.ResourceCounts {
	return api.ResourceCounts{Instances: sign, VCPUs: sign * size.VCPUs, MemoryMiB: sign * size.MemoryMiB, DiskGiB: sign * size.DiskGiB}
}

// Service is the compute service.
type Service struct {
	s      store.Store
	hosts  *hosts.Service
	log    *slog.Logger
	cache  *cache
	policy string
	kick   chan struct{}
	// now is the clock every transition is stamped with.
	clock   func() time.Time
	usageMu sync.Mutex
	usage   map[string]api.InstanceUsage
	// usageSwept is when usage last forgot what nobody reports (setUsage).
	usageSwept time.Time
	images     Images
	ports      Ports
	ha         haConfig
	mover      Mover
	volumes    Volumes
}

// Images is what the compute service needs of the image service: the
// image an instance names.
type Images interface {
	Resolve(ctx context.Context, project, ref string) (api.Image, error)
}

// Ports is what the compute service needs of the network service: an
// instance's ports are made in its own transaction and go with it.
type Ports interface {
	CheckGroups(ctx context.Context, project string, groups []string) error
	PlanInstancePorts(ctx context.Context, project, instance string, networks, groups []string) (network.InstancePorts, error)
	DetachInstance(ctx context.Context, project, instance string) error
}

// Deps are the other services the compute service uses, and its clock.
// Without Images, image names are kept as given (the sim driver needs no
// bytes); without Ports, instances cannot ask for networks.
type Deps struct {
	Images Images
	Ports  Ports
	Clock  func() time.Time
	// FenceTimeout is how long an HA instance's host stays lost before
	// the instance is recreated elsewhere (default DefaultFenceTimeout).
	FenceTimeout time.Duration
	// Mover carries out consolidation's moves (default: the service's
	// own live and cold migration, migrations.go).
	Mover Mover
}

// New returns the compute service; Run starts its cache and controllers.
func New(s store.Store, h *hosts.Service, policy string, log *slog.Logger, deps Deps) *Service {
	if policy == "" {
		policy = scheduler.Packing
	}
	if deps.Images == nil {
		deps.Images = namesOnly{}
	}
	if deps.Ports == nil {
		deps.Ports = noNetworks{}
	}
	if deps.Clock == nil {
		deps.Clock = time.Now
	}
	svc := &Service{s: s, hosts: h, log: log, cache: newCache(), policy: policy, kick: make(chan struct{}, 1), clock: deps.Clock,
		usage: map[string]api.InstanceUsage{}, images: deps.Images, ports: deps.Ports, ha: newHAConfig(deps.FenceTimeout), mover: deps.Mover, volumes: noVolumes{}}
	if svc.mover == nil {
		svc.mover = migrator{svc}
	}
	return svc
}

// namesOnly is a cloud without an image service: every name is unknown
// to it, and kept as given.
type namesOnly struct{}

func (namesOnly) Resolve(_ context.Context, _, ref string) (api.Image, error) {
	return api.Image{}, errs.NotFound("image %q not found", ref)
}

// noNetworks is a cloud without a network service.
type noNetworks struct{}

func (noNetworks) CheckGroups(context.Context, string, []string) error {
	return errs.Invalid("networks", "this cloud has no network service")
}

func (noNetworks) PlanInstancePorts(context.Context, string, string, []string, []string) (network.InstancePorts, error) {
	return network.InstancePorts{}, errs.Invalid("networks", "this cloud has no network service")
}

func (noNetworks) DetachInstance(context.Context, string, string) error { return nil }

// Policy is the scheduling policy in force.
func (svc *Service) Policy() string { return svc.policy }

// Run keeps the cache and runs the scheduler and node controllers until
// ctx ends.
func (svc *Service) Run(ctx context.Context) {
	go svc.cache.run(ctx, svc.s, svc.log)
	select {
	case <-svc.cache.ready:
	case <-ctx.Done():
		return
	}
	go svc.nodeController(ctx)
	go svc.haController(ctx)
	go svc.migrationController(ctx)
	svc.schedulerLoop(ctx)
}

// Ready waits until the cache is filled.
func (svc *Service) Ready(ctx context.Context) error {
	select {
	case <-svc.cache.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (svc *Service) now() time.Time { return svc.clock().UTC() }

// Wake makes the scheduler run now (hosts or capacity changed).
func (svc *Service) Wake() { svc.wake() }

func (svc *Service) wake() {
	select {
	case svc.kick <- struct{}{}:
	default:
	}
}

// ValidateInstancesPost checks a create request.
func ValidateInstancesPost(req *api.InstancesPost) error {
	if err := validate.Name("name", req.Name); err != nil {
		return err
	}
	if req.Type != api.TypeVM && req.Type != api.TypeContainer {
		return errs.Invalid("type", "type %q: use vm or container", req.Type)
	}
	if err := validate.Name("flavor", req.Flavor); err != nil {
		return err
	}
	if req.Image == "" && req.BootVolume == "" {
		return errs.Invalid("image", "image is required (or boot_volume, for a VM)")
	}
	if err := validate.Text("image", req.Image, 253); err != nil {
		return err
	}
	for _, e := range []struct{ field, src string }{{"requirements", req.Requirements}, {"rank", req.Rank}} {
		if e.src == "" {
			continue
		}
		if _, err := scheduler.Parse(e.src); err != nil {
			return errs.Invalid(e.field, "%s: %v", e.field, err)
		}
	}
	if req.ServerGroup != "" {
		if err := validate.Name("server_group", req.ServerGroup); err != nil {
			return err
		}
	}
	if err := validate.Document("user_data", req.UserData, 64*1024); err != nil {
		return err
	}
	if len(req.Networks) > 8 {
		return errs.Invalid("networks", "an instance may have at most 8 networks, not %d", len(req.Networks))
	}
	for i, n := range req.Networks {
		if err := validate.Text(fmt.Sprintf("networks[%d]", i), n, 127); err != nil || n == "" {
			return errs.Invalid(fmt.Sprintf("networks[%d]", i), "networks[%d] must name a network", i)
		}
	}
	for i, g := range req.SecurityGroups {
		if err := validate.Name(fmt.Sprintf("security_groups[%d]", i), g); err != nil {
			return err
		}
	}
	if len(req.SecurityGroups) > 0 && len(req.Networks) == 0 {
		return errs.Invalid("security_groups", "security groups filter ports: give networks too")
	}
	return validate.Labels("labels", req.Labels)
}

// Create makes an instance in PENDING, charging the project's quota in
// the same transaction.
func (svc *Service) Create(ctx context.Context, project string, req api.InstancesPost) (api.Instance, error) {
	return svc.CreateWith(ctx, project, req, nil)
}

// VolumePlanner plans the volumes made with a new instance (a restore
// from an instance backup), in place of its boot_volume or
// root_volume_size_gib.
type VolumePlanner func(ctx context.Context, in volumes.BootInstance) (volumes.BootPlan, error)

// CreateWith is Create with the instance's volumes planned by plan (nil:
// from the request's boot_volume or root_volume_size_gib), written in the
// instance's own transaction.
func (svc *Service) CreateWith(ctx context.Context, project string, req api.InstancesPost, plan VolumePlanner) (api.Instance, error) {
	if err := ValidateInstancesPost(&req); err != nil {
		return api.Instance{}, err
	}
	fl, err := flavor.Get(ctx, svc.s, req.Flavor)
	if err != nil {
		return api.Instance{}, err
	}
	if req.ServerGroup != "" {
		if _, _, err := svc.getGroup(ctx, project, req.ServerGroup); err != nil {
			return api.Instance{}, err
		}
	}
	id := uuid.NewString()
	bi := volumes.BootInstance{ID: id, Name: req.Name, Type: req.Type}
	var boot volumes.BootPlan
	if plan != nil {
		boot, err = plan(ctx, bi)
	} else {
		boot, err = svc.volumes.PlanBoot(ctx, project, bi, req)
	}
	if err != nil {
		return api.Instance{}, err
	}
	if req.Image == "" {
		req.Image = boot.Image
	}
	imageSum, imageRef, err := svc.image(ctx, project, req, fl)
	if err != nil {
		return api.Instance{}, err
	}
	t := svc.now()
	r := record{Instance: api.Instance{
		Meta:    api.Meta{ID: id, Name: req.Name, Labels: req.Labels, CreatedAt: t, UpdatedAt: t},
		Project: project, Type: req.Type, Flavor: fl.Name,
		Size:  api.Size{VCPUs: fl.VCPUs, MemoryMiB: fl.MemoryMiB, DiskGiB: fl.DiskGiB, SwapMiB: fl.SwapMiB},
		Image: imageRef, ImageSHA256: imageSum, Requirements: req.Requirements, Rank: req.Rank, ServerGroup: req.ServerGroup, UserData: req.UserData,
		State: api.StatePending,
	}, Nesting: fl.Nesting}
	r.HA = req.HA || fl.HA
	if boot.Volume != "" {
		r.BootVolume, r.Boot = boot.Volume, &bootVolume{ID: boot.ID, Host: boot.Host, Local: boot.Local}
	}
	r.NewVolumes, r.RootBackup = boot.Wait, boot.RootBackup
	r.History = []api.HistoryRecord{{Seq: 1, Time: t, To: api.StatePending, Actor: reqctx.Actor(ctx), Reason: "created"}}
	key := instanceKey(project, req.Name)
	// The instance, its ports and their addresses are one transaction; a
	// conflict other than the name means an address went to someone else
	// meanwhile: plan the ports again.
	if len(req.Networks) > 0 {
		if len(req.SecurityGroups) == 0 {
			req.SecurityGroups = []string{network.DefaultGroup}
		}
		if err := svc.ports.CheckGroups(ctx, project, req.SecurityGroups); err != nil {
			return api.Instance{}, err
		}
	}
	var rev int64
	for attempt := 0; ; attempt++ {
		var ports network.InstancePorts
		if len(req.Networks) > 0 {
			if ports, err = svc.ports.PlanInstancePorts(ctx, project, req.Name, req.Networks, req.SecurityGroups); err != nil {
				return api.Instance{}, err
			}
		}
		r.NICs = ports.NICs
		counts := charge(r.Size, 1)
		counts.Ports = int64(len(ports.NICs))
		counts.Volumes, counts.VolumeGiB = boot.Counts.Volumes, boot.Counts.VolumeGiB
		rev, err = quota.Reserve(ctx, svc.s, project, counts, slices.Concat([]store.Cond{store.Absent(key)}, ports.Conds, boot.Conds), slices.Concat([]store.Op{
			store.PutJSON(key, r),
			events.Op(ctx, "instance", events.Created, project, instanceURL(project, r.Name), r.api(0)),
		}, ports.Ops, boot.Ops, idempotency.Done(ctx, r.api(0))))
		if errors.Is(err, store.ErrConflict) {
			if _, gerr := svc.s.Get(ctx, key); gerr == nil {
				return api.Instance{}, errs.Conflict("instance %q already exists in project %q", req.Name, project)
			}
			if verr := svc.volumes.PlanConflict(ctx, project, boot); verr != nil {
				return api.Instance{}, verr
			}
			if len(ports.NICs) > 0 && attempt < 20 {
				continue
			}
			if len(ports.NICs) > 0 {
				return api.Instance{}, errs.Conflict("instance %q: its ports could not be made (a port named %s-ethN exists, or addresses are contended); try again", req.Name, req.Name)
			}
		}
		if err != nil {
			return api.Instance{}, err
		}
		break
	}
	svc.wake()
	return r.api(rev), nil
}

// image resolves the image an instance names. An image in the image
// service must be active and of the right kind, and is kept as the
// "owner/name" it resolved to, so that nothing later (in-use checks,
// snapshots) resolves the name again to another image; a name it does not
// know is kept as is (the sim driver needs no bytes; real drivers fail its
// PROLOG with the reason); any other error (an ambiguous name, a store that
// does not answer) is the create's.
func (svc *Service) image(ctx context.Context, project string, req api.InstancesPost, fl api.Flavor) (sum, ref string, err error) {
	if req.Image == "" {
		return "", "", nil // a VM booting from a volume with a boot loader of its own
	}
	img, err := svc.images.Resolve(ctx, project, req.Image)
	if errors.Is(err, errs.ErrNotFound) {
		return "", req.Image, nil
	}
	if err != nil {
		return "", "", err
	}
	switch {
	case img.Status != api.ImageActive:
		return "", "", errs.Conflict("image %q is %s, not active", req.Image, img.Status)
	case req.Type == api.TypeContainer && img.Kind != api.KindContainerRootfs,
		req.Type == api.TypeVM && img.Kind == api.KindContainerRootfs:
		return "", "", errs.Invalid("image", "image %q is a %s; a %s needs another kind", req.Image, img.Kind, req.Type)
	}
	if img.MinFlavor != "" {
		if min, err := flavor.Get(ctx, svc.s, img.MinFlavor); err == nil &&
			(fl.VCPUs < min.VCPUs || fl.MemoryMiB < min.MemoryMiB || fl.DiskGiB < min.DiskGiB) {
			return "", "", errs.Invalid("flavor", "image %q needs at least flavor %s (%d vCPU, %d MiB, %d GiB); %s is smaller", req.Image, min.Name, min.VCPUs, min.MemoryMiB, min.DiskGiB, fl.Name)
		}
	}
	return img.SHA256, img.Project + "/" + img.Name, nil
}

// InstanceNICs returns a live instance's id and ports.
func (svc *Service) InstanceNICs(ctx context.Context, project, name string) (string, []api.InstanceNIC, error) {
	r, _, err := svc.get(ctx, project, name)
	return r.ID, r.NICs, err
}

// HostOf says which host a live instance is on ("" when none).
func (svc *Service) HostOf(project, name string) string {
	svc.cache.mu.RLock()
	defer svc.cache.mu.RUnlock()
	if e := svc.cache.instances[instanceKey(project, name)]; e != nil && onHost(e.rec.State) {
		return e.rec.Host
	}
	return ""
}

// get reads a live instance.
func (svc *Service) get(ctx context.Context, project, name string) (record, int64, error) {
	var r record
	rev, err := store.GetJSON(ctx, svc.s, instanceKey(project, name), &r)
	if errors.Is(err, store.ErrNotFound) {
		return r, 0, errs.NotFound("instance %q not found in project %q", name, project)
	}
	return r, rev, err
}

// Get returns an instance; a DONE one is found in the archive.
func (svc *Service) Get(ctx context.Context, project, name string) (api.Instance, []api.HistoryRecord, error) {
	r, rev, err := svc.get(ctx, project, name)
	if errors.Is(err, errs.ErrNotFound) {
		kvs, lerr := store.ListAll(ctx, svc.s, archivePrefix+project+"/"+name+"/")
		if lerr != nil || len(kvs) == 0 {
			return api.Instance{}, nil, err
		}
		// The newest archived one.
		var newest record
		var nrev int64
		for _, kv := range kvs {
			var a record
			if store.Decode(kv, &a) == nil && (nrev == 0 || a.UpdatedAt.After(newest.UpdatedAt)) {
				newest, nrev = a, kv.Revision
			}
		}
		return newest.api(nrev), newest.History, nil
	}
	if err != nil {
		return api.Instance{}, nil, err
	}
	return svc.withUsage(r.api(rev)), r.History, nil
}

// ImageUsers counts the live instances, of any project, using project's
// image.
func (svc *Service) ImageUsers(ctx context.Context, project, image string) (int, error) {
	if err := svc.Ready(ctx); err != nil {
		return 0, err
	}
	svc.cache.mu.RLock()
	defer svc.cache.mu.RUnlock()
	n := 0
	for _, e := range svc.cache.instances {
		// Instances keep the "owner/name" their image resolved to; those
		// made before kept the bare name they were given, which named
		// their own project's image when it existed.
		if e.rec.Image == project+"/"+image || (e.rec.Project == project && e.rec.Image == image) {
			n++
		}
	}
	return n, nil
}

// Metered is an instance with its whole history, for metering.
type Metered struct {
	Instance api.Instance
	History  []api.HistoryRecord
}

// ForMetering returns every instance of a project ("" = all), live and
// archived, with history.
func (svc *Service) ForMetering(ctx context.Context, project string) ([]Metered, error) {
	items, err := store.ListJSON[record](ctx, svc.s, store.Under(project, instancesPrefix, archivePrefix)...)
	out := make([]Metered, len(items))
	for i, it := range items {
		out[i] = Metered{Instance: it.Value.Instance, History: it.Value.History}
	}
	return out, err
}

// Action carries out a user action: the instance moves at once to the
// state the action table says, and the agent (or the scheduler) does the
// rest. A wrong action is a conflict naming the state and what is allowed.
func (svc *Service) Action(ctx context.Context, project, name string, action api.Action) (api.Instance, error) {
	if !action.Known() {
		return api.Instance{}, errs.Invalid("action", "action %q: use one of %v", action, api.Actions)
	}
	if action == api.ActionMigrate {
		return svc.Migrate(ctx, project, name, api.InstanceMigrate{})
	}
	for attempt := 0; attempt < 50; attempt++ {
		r, rev, err := svc.get(ctx, project, name)
		if err != nil {
			return api.Instance{}, svc.doneOr(ctx, project, name, string(action), err)
		}
		rule, ok := ruleFor(r.State, action)
		if !ok {
			what := "nothing, until it settles"
			if allowed := Allowed(r.State); len(allowed) > 0 {
				what = fmt.Sprint(allowed)
				what = strings.ReplaceAll(what[1:len(what)-1], " ", ", ")
			}
			return api.Instance{}, errs.Conflict("cannot %s instance %q: it is %s; allowed now: %s", action, name, r.State, what)
		}
		r.Action = action
		if rule.To == api.StatePending || rule.To == api.StateHold || rule.To == api.StateDone {
			r.Action = ""
		}
		r.transition(svc.now(), rule.To, "", reqctx.Actor(ctx), "user: "+string(action))
		nrev, err := svc.write(ctx, &r, rev)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return api.Instance{}, err
		}
		if rule.To == api.StatePending {
			svc.wake()
		}
		return r.api(nrev), nil
	}
	return api.Instance{}, errs.Unavailable("instance %q is changing too fast; try again", name)
}

// doneOr turns "not found" into a conflict when the instance is DONE
// (archived): it exists, but nothing can be done to it.
func (svc *Service) doneOr(ctx context.Context, project, name, what string, err error) error {
	if !errors.Is(err, errs.ErrNotFound) {
		return err
	}
	if in, _, gerr := svc.Get(ctx, project, name); gerr == nil && in.State == api.StateDone {
		return errs.Conflict("cannot %s instance %q: it is DONE; allowed now: nothing (create a new one)", what, name)
	}
	return err
}

// write stores a changed record with CAS on rev. Reaching DONE moves it to
// the archive and gives its quota back, in the same transaction.
func (svc *Service) write(ctx context.Context, r *record, rev int64) (int64, error) {
	key := instanceKey(r.Project, r.Name)
	ev := r.event(ctx)
	if r.State == api.StateDone {
		// Its ports and their addresses go with it, in one transaction;
		// its floating IPs stay the project's, detached.
		counts := charge(r.Size, -1)
		counts.Ports = -int64(len(r.NICs))
		nrev, err := quota.Reserve(ctx, svc.s, r.Project, counts, []store.Cond{store.At(key, rev)}, append([]store.Op{
			store.Del(key), store.PutJSON(archiveKey(r.Project, r.Name, r.ID), r), ev,
		}, network.ReleaseOps(ctx, r.Project, r.NICs)...))
		if err == nil && len(r.NICs) > 0 {
			if derr := svc.ports.DetachInstance(context.WithoutCancel(ctx), r.Project, r.Name); derr != nil {
				svc.log.Warn("detaching floating IPs", "instance", r.Name, "err", derr)
			}
		}
		return nrev, err
	}
	return svc.s.Txn(ctx, []store.Cond{store.At(key, rev)}, []store.Op{store.PutJSON(key, *r), ev})
}
