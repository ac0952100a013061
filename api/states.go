package api

// State is where an instance is in its lifecycle, named as OpenNebula
// names it (docs/states.md has the machine; internal/compute keeps it as
// data and a test checks the two agree).
type State string

// Instance states.
const (
	StatePending   State = "PENDING"
	StateHold      State = "HOLD"
	StateProlog    State = "PROLOG"
	StateBoot      State = "BOOT"
	StateRunning   State = "RUNNING"
	StateShutdown  State = "SHUTDOWN"
	StateEpilog    State = "EPILOG"
	StateSave      State = "SAVE"
	StateSuspended State = "SUSPENDED"
	StateStopped   State = "STOPPED"
	StatePoweroff  State = "POWEROFF"
	StateMigrate   State = "MIGRATE"
	StateFailed    State = "FAILED"
	StateUnknown   State = "UNKNOWN"
	StateDone      State = "DONE"
)

// States lists every state, in lifecycle order.
var States = []State{StatePending, StateHold, StateProlog, StateBoot, StateRunning, StateShutdown, StateEpilog, StateSave,
	StateSuspended, StateStopped, StatePoweroff, StateMigrate, StateFailed, StateUnknown, StateDone}

// Known says whether s is one of the states.
func (s State) Known() bool {
	for _, k := range States {
		if s == k {
			return true
		}
	}
	return false
}

// OnHost says whether an instance in this state holds resources on its
// host (counted in the host's allocation): from its placement until it
// is STOPPED (state saved, host freed) or DONE.
func (s State) OnHost() bool {
	switch s {
	case StatePending, StateHold, StateStopped, StateDone:
		return false
	}
	return true
}

// Transient says whether someone (the scheduler, an agent) is working on
// an instance in this state: it will move on by itself. The others are
// settled: they change only when a user acts (or a host is lost).
func (s State) Transient() bool {
	switch s {
	case StatePending, StateProlog, StateBoot, StateShutdown, StateEpilog, StateSave, StateMigrate:
		return true
	}
	return false
}

// Action is what a user may ask of an instance.
type Action string

// Instance actions.
const (
	ActionHold      Action = "hold"
	ActionRelease   Action = "release"
	ActionStart     Action = "start"
	ActionStop      Action = "stop"
	ActionSuspend   Action = "suspend"
	ActionResume    Action = "resume"
	ActionPoweroff  Action = "poweroff"
	ActionReboot    Action = "reboot"
	ActionTerminate Action = "terminate"
	// ActionMigrate moves the instance to another host (POST
	// .../migrate chooses the host and the mode).
	ActionMigrate Action = "migrate"
)

// Actions lists every action.
var Actions = []Action{ActionHold, ActionRelease, ActionStart, ActionStop, ActionSuspend, ActionResume, ActionPoweroff, ActionReboot, ActionTerminate, ActionMigrate}

// Known says whether a is one of the actions.
func (a Action) Known() bool {
	for _, k := range Actions {
		if a == k {
			return true
		}
	}
	return false
}
