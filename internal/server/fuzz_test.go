package server

import (
	"regexp"
	"testing"

	"github.com/kumocloud/kumo/api"
	"github.com/kumocloud/kumo/internal/flavor"
	"github.com/kumocloud/kumo/internal/identity"
	"github.com/kumocloud/kumo/internal/quota"
	"github.com/kumocloud/kumo/internal/server/response"
)

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// FuzzDecodeAndValidate feeds arbitrary bodies to the request decoder and
// validators of the create endpoints. Whatever comes in: no panic, every
// refusal is a 400, and whatever is accepted is really valid.
func FuzzDecodeAndValidate(f *testing.F) {
	seeds := []string{
		`{"name":"web","quota":{"instances":10,"memory_mib":2048}}`,
		`{"name":"web","labels":{"a":"b"},"description":"x"}`,
		`{"name":"alice","password":"longenough","cloud_admin":true}`,
		`{"name":"f","vcpus":2,"memory_mib":512,"disk_gib":10,"price_micro_per_hour":100000}`,
		`{"quota":{"vcpus":-1}}`,
		`{"name":"x","quota":{"instances":-2}}`,
		`{"name":42}`, `[]`, `{`, `{"name":"a"}{"name":"b"}`, `{"unknown":1}`, ``,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		var err error
		switch kind % 4 {
		case 0:
			var req api.ProjectsPost
			if err = decodeJSON(body, &req); err == nil {
				if err = identity.ValidateProjectsPost(&req); err == nil {
					if !dnsLabel.MatchString(req.Name) {
						t.Fatalf("accepted project name %q", req.Name)
					}
					for k, v := range req.Quota {
						if v < -1 {
							t.Fatalf("accepted quota %s=%d", k, v)
						}
					}
				}
			}
		case 1:
			var req api.UsersPost
			if err = decodeJSON(body, &req); err == nil {
				if err = identity.ValidateUsersPost(&req); err == nil && (!dnsLabel.MatchString(req.Name) || len(req.Password) < 8) {
					t.Fatalf("accepted user %+v", req)
				}
			}
		case 2:
			var req api.FlavorsPost
			if err = decodeJSON(body, &req); err == nil {
				if err = flavor.Validate(&req); err == nil && (req.VCPUs < 1 || req.MemoryMiB < 16 || req.PriceMicro < 0) {
					t.Fatalf("accepted flavor %+v", req)
				}
			}
		case 3:
			var req api.QuotaPut
			if err = decodeJSON(body, &req); err == nil {
				var lim api.ResourceCounts
				err = quota.Apply(&lim, req.Quota, "quota")
			}
		}
		if err != nil {
			if status, code := response.Status(err); status != 400 || code != api.CodeInvalid {
				t.Fatalf("refusal of %q answered %d %s: %v", body, status, code, err)
			}
		}
	})
}
