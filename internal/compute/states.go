// Package compute owns instances: their lifecycle state machine, history,
// quota charges, server groups, and the controllers that move them (the
// scheduler loop and the node controller). Keys: /instances/{project}/{name},
// /servergroups/{project}/{name}.
package compute

import (
	"slices"
	"strings"

	"github.com/kumocloud/kumo/api"
)

// Actions a user can ask for.
const (
	ActHold      = "hold"
	ActRelease   = "release"
	ActTerminate = "terminate"
	ActStop      = "stop"
	ActStart     = "start"
	ActSuspend   = "suspend"
	ActResume    = "resume"
	ActPoweroff  = "poweroff"
	ActReboot    = "reboot"
)

// AllActions lists every action.
var AllActions = []string{ActHold, ActRelease, ActStart, ActStop, ActSuspend, ActResume, ActPoweroff, ActReboot, ActTerminate}

// actionRule is one row of the state machine's action table: in state
// From, the action moves the instance to To at once; the agent finishes it.
type actionRule struct {
	From, Action, To string
}

// actionTable is THE table of user actions: the API, the CLI and
// docs/states.md all follow it (a test checks the doc).
var actionTable = []actionRule{
	{api.StatePending, ActHold, api.StateHold},
	{api.StatePending, ActTerminate, api.StateDone},
	{api.StateHold, ActRelease, api.StatePending},
	{api.StateHold, ActTerminate, api.StateDone},
	{api.StateRunning, ActStop, api.StateSave},
	{api.StateRunning, ActSuspend, api.StateSave},
	{api.StateRunning, ActPoweroff, api.StateShutdown},
	{api.StateRunning, ActReboot, api.StateBoot},
	{api.StateRunning, ActTerminate, api.StateShutdown},
	{api.StateSuspended, ActResume, api.StateBoot},
	{api.StateSuspended, ActStop, api.StateSave},
	{api.StateSuspended, ActTerminate, api.StateShutdown},
	{api.StateStopped, ActStart, api.StatePending},
	{api.StateStopped, ActTerminate, api.StateDone},
	{api.StatePoweroff, ActStart, api.StateBoot},
	{api.StatePoweroff, ActTerminate, api.StateEpilog},
	{api.StateFailed, ActTerminate, api.StateEpilog},
	{api.StateUnknown, ActTerminate, api.StateDone},
}

// agentTable lists the transitions an agent may report, given the action
// being carried out ("" = none). Anything else is refused.
var agentTable = []struct {
	From, Action, To string
}{
	{api.StateProlog, "", api.StateBoot},
	{api.StateBoot, "", api.StateRunning},
	{api.StateBoot, ActReboot, api.StateRunning},
	{api.StateBoot, ActResume, api.StateRunning},
	{api.StateBoot, ActStart, api.StateRunning},
	// The instance stopped by itself (a container's init exited, a VM
	// powered itself off): the agent notices and says why.
	{api.StateRunning, "", api.StatePoweroff},
	{api.StateShutdown, ActTerminate, api.StateEpilog},
	{api.StateShutdown, ActPoweroff, api.StatePoweroff},
	{api.StateSave, ActSuspend, api.StateSuspended},
	{api.StateSave, ActStop, api.StateEpilog},
	{api.StateEpilog, ActTerminate, api.StateDone},
	{api.StateEpilog, ActStop, api.StateStopped},
}

// Allowed returns the actions allowed in a state.
func Allowed(state string) []string {
	out := []string{}
	for _, r := range actionTable {
		if r.From == state {
			out = append(out, r.Action)
		}
	}
	return out
}

// ruleFor finds the rule for an action in a state.
func ruleFor(state, action string) (actionRule, bool) {
	for _, r := range actionTable {
		if r.From == state && r.Action == action {
			return r, true
		}
	}
	return actionRule{}, false
}

// agentMayReport says whether an agent may move an instance from -> to.
// Any state an agent works on may also end in FAILED.
func agentMayReport(from, action, to string) bool {
	if to == api.StateFailed {
		return slices.Contains([]string{api.StateProlog, api.StateBoot, api.StateShutdown, api.StateSave, api.StateEpilog, api.StateRunning, api.StateSuspended, api.StatePoweroff}, from)
	}
	for _, r := range agentTable {
		if r.From == from && r.To == to && (r.Action == action || r.Action == "" && action == "") {
			return true
		}
	}
	return false
}

// onHost: states in which the instance holds resources on its host.
func onHost(state string) bool {
	switch state {
	case api.StatePending, api.StateHold, api.StateStopped, api.StateDone:
		return false
	}
	return true
}

// StatesDoc renders the action table as the Markdown table in
// docs/states.md.
func StatesDoc() string {
	var b strings.Builder
	b.WriteString("| state | action | goes to |\n|---|---|---|\n")
	for _, r := range actionTable {
		b.WriteString("| " + r.From + " | " + r.Action + " | " + r.To + " |\n")
	}
	return b.String()
}
