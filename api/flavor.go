package api

// Flavor is an instance type: the size of an instance and its price.
type Flavor struct {
	Meta
	VCPUs        int64   `json:"vcpus"`
	MemoryMiB    int64   `json:"memory_mib"`
	DiskGiB      int64   `json:"disk_gib"`
	PricePerHour float64 `json:"price_per_hour"`
	Description  string  `json:"description,omitempty"`
}

// FlavorsPost creates a flavor (cloud admin).
type FlavorsPost struct {
	Name         string            `json:"name"`
	VCPUs        int64             `json:"vcpus"`
	MemoryMiB    int64             `json:"memory_mib"`
	DiskGiB      int64             `json:"disk_gib"`
	PricePerHour float64           `json:"price_per_hour"`
	Description  string            `json:"description,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}
