package api

import "testing"

func TestStatePredicates(t *testing.T) {
	for _, s := range States {
		if !s.Known() {
			t.Errorf("%s unknown", s)
		}
		// A state that holds resources on a host and is transient is one
		// an agent works on; PENDING is the only transient state without a
		// host, and DONE, STOPPED and HOLD are settled without one.
		if !s.OnHost() && s.Transient() && s != StatePending {
			t.Errorf("%s: transient without a host", s)
		}
	}
	if State("RUNNINGX").Known() || Action("explode").Known() {
		t.Error("unknown names are known")
	}
	for _, s := range []State{StateRunning, StateSuspended, StatePoweroff, StateFailed, StateUnknown, StateStopped, StateHold, StateDone} {
		if s.Transient() {
			t.Errorf("%s is settled", s)
		}
	}
}
