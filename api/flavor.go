package api

// Flavor is an instance type: the size of an instance and its price.
type Flavor struct {
	Meta
	VCPUs     int64 `json:"vcpus"`
	MemoryMiB int64 `json:"memory_mib"`
	DiskGiB   int64 `json:"disk_gib"`
	SwapMiB   int64 `json:"swap_mib,omitempty"`
	// PriceMicro is the price per hour now, in micro-units of the cloud's
	// currency (GET /v1/prices has its history).
	PriceMicro  int64  `json:"price_micro_per_hour"`
	Description string `json:"description,omitempty"`
	// Nesting lets containers of this flavor make user namespaces (to run
	// containers inside); only cloud admins make flavors.
	Nesting bool `json:"nesting,omitempty"`
	// HA makes every instance of this flavor highly available (docs/ha.md).
	HA bool `json:"ha,omitempty"`
}

// FlavorsPost creates a flavor (cloud admin).
type FlavorsPost struct {
	Name        string            `json:"name"`
	VCPUs       int64             `json:"vcpus"`
	MemoryMiB   int64             `json:"memory_mib"`
	DiskGiB     int64             `json:"disk_gib"`
	SwapMiB     int64             `json:"swap_mib,omitempty"`
	PriceMicro  int64             `json:"price_micro_per_hour"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Nesting     bool              `json:"nesting,omitempty"`
	HA          bool              `json:"ha,omitempty"`
}
