package metering

import "github.com/kumocloud/kumo/api"

// classOf is what history record rec's stay bills. A MIGRATE stay bills
// as the state the migration left when that bills less: a STOPPED or
// POWEROFF instance being moved holds no CPU or memory anywhere (its
// target reserves none), so it bills storage as it did before, not the
// flavor's price as a running one moving live does. left carries the
// state the current migration left from record to record (a migration's
// stages are MIGRATE->MIGRATE records).
func (r Rules) classOf(rec api.HistoryRecord, left *api.State) Class {
	if rec.To != api.StateMigrate {
		*left = ""
		return r[rec.To]
	}
	if rec.From != api.StateMigrate {
		*left = rec.From
	}
	class := r[rec.To]
	if *left != "" && weight[r[*left]] < weight[class] {
		class = r[*left]
	}
	return class
}

// weight orders the classes by what they bill.
var weight = map[Class]int{None: 0, Storage: 1, Compute: 2}
