package driver

// Names lists the capabilities by name ("exec", "live-migrate"), as
// agents report them to the server (api.HostSpec.Capabilities).
func (c Capability) Names() []string {
	out := []string{}
	for i, n := range capNames {
		if c.Has(1 << i) {
			out = append(out, n)
		}
	}
	return out
}

// Names are the capabilities by name for each instance type, as agents
// report them (api.HostSpec.Capabilities).
func (cs Capabilities) Names() map[string][]string {
	out := make(map[string][]string, len(cs))
	for typ, c := range cs {
		out[typ] = c.Names()
	}
	return out
}
