// Package compute owns instances: their lifecycle state machine, history,
// quota charges, server groups, and the controllers that move them (the
// scheduler loop, whose commits re-check each host, and the node
// controller, which takes a silent host OFFLINE with its instances in one
// decision), and what agents are assigned. Keys:
// /instances/{project}/{name}, /archive/instances/{project}/{name}/{id}
// (DONE ones, for history and metering), /servergroups/{project}/{name},
// /placements/{host} (the revision of a host's last placement).
package compute

import (
	"slices"
	"strings"

	"github.com/kumocloud/kumo/api"
)

// actionRule is one row of the state machine's action table: in state
// From, the action moves the instance to To at once; the agent finishes it.
type actionRule struct {
	From   api.State
	Action api.Action
	To     api.State
}

// actionTable is THE table of user actions: the API, the CLI and
// docs/states.md all follow it (a test checks the doc).
var actionTable = []actionRule{
	{api.StatePending, api.ActionHold, api.StateHold},
	{api.StatePending, api.ActionTerminate, api.StateDone},
	{api.StateHold, api.ActionRelease, api.StatePending},
	{api.StateHold, api.ActionTerminate, api.StateDone},
	{api.StateRunning, api.ActionStop, api.StateSave},
	{api.StateRunning, api.ActionSuspend, api.StateSave},
	{api.StateRunning, api.ActionPoweroff, api.StateShutdown},
	{api.StateRunning, api.ActionReboot, api.StateBoot},
	{api.StateRunning, api.ActionTerminate, api.StateShutdown},
	{api.StateRunning, api.ActionMigrate, api.StateMigrate},
	{api.StateSuspended, api.ActionResume, api.StateBoot},
	{api.StateSuspended, api.ActionStop, api.StateSave},
	{api.StateSuspended, api.ActionTerminate, api.StateShutdown},
	{api.StateStopped, api.ActionStart, api.StatePending},
	{api.StateStopped, api.ActionTerminate, api.StateDone},
	{api.StateStopped, api.ActionMigrate, api.StateMigrate},
	{api.StatePoweroff, api.ActionStart, api.StateBoot},
	{api.StatePoweroff, api.ActionTerminate, api.StateEpilog},
	{api.StatePoweroff, api.ActionMigrate, api.StateMigrate},
	{api.StateFailed, api.ActionTerminate, api.StateEpilog},
	{api.StateUnknown, api.ActionTerminate, api.StateDone},
}

// agentTable lists the transitions an agent may report, given the action
// being carried out ("" = none). Anything else is refused.
var agentTable = []actionRule{
	{api.StateProlog, "", api.StateBoot},
	{api.StateBoot, "", api.StateRunning},
	{api.StateBoot, api.ActionReboot, api.StateRunning},
	{api.StateBoot, api.ActionResume, api.StateRunning},
	{api.StateBoot, api.ActionStart, api.StateRunning},
	// The instance stopped by itself (a container's init exited, a VM
	// powered itself off): the agent notices and says why.
	{api.StateRunning, "", api.StatePoweroff},
	{api.StateShutdown, api.ActionTerminate, api.StateEpilog},
	{api.StateShutdown, api.ActionPoweroff, api.StatePoweroff},
	{api.StateSave, api.ActionSuspend, api.StateSuspended},
	{api.StateSave, api.ActionStop, api.StateEpilog},
	{api.StateEpilog, api.ActionTerminate, api.StateDone},
	{api.StateEpilog, api.ActionStop, api.StateStopped},
}

// Allowed returns the actions allowed in a state.
func Allowed(state api.State) []api.Action {
	out := []api.Action{}
	for _, r := range actionTable {
		if r.From == state {
			out = append(out, r.Action)
		}
	}
	return out
}

// ruleFor finds the rule for an action in a state.
func ruleFor(state api.State, action api.Action) (actionRule, bool) {
	for _, r := range actionTable {
		if r.From == state && r.Action == action {
			return r, true
		}
	}
	return actionRule{}, false
}

// agentMayReport says whether an agent may move an instance from -> to.
// Any state an agent works on may also end in FAILED.
func agentMayReport(from api.State, action api.Action, to api.State) bool {
	if to == api.StateFailed {
		return slices.Contains([]api.State{api.StateProlog, api.StateBoot, api.StateShutdown, api.StateSave, api.StateEpilog, api.StateRunning, api.StateSuspended, api.StatePoweroff}, from)
	}
	for _, r := range agentTable {
		if r.From == from && r.To == to && (r.Action == action || r.Action == "" && action == "") {
			return true
		}
	}
	return false
}

// onHost: states in which the instance holds resources on its host.
func onHost(state api.State) bool { return state.OnHost() }

// StatesDoc renders the action table as the Markdown table in
// docs/states.md.
func StatesDoc() string {
	var b strings.Builder
	b.WriteString("| state | action | goes to |\n|---|---|---|\n")
	for _, r := range actionTable {
		b.WriteString("| " + string(r.From) + " | " + string(r.Action) + " | " + string(r.To) + " |\n")
	}
	return b.String()
}
