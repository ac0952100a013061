package agent

import (
	"path"
	"regexp"
)

// hostPath matches an absolute path of two or more elements as it appears
// in an error's text ("open /var/lib/kumo/vm/i-1/disk.qcow2: no space").
// A path starts the text or follows a space, quote, '=', '(' or ':'
// ("abc/def/ghi" is not one).
var hostPath = regexp.MustCompile(`(^|[\s"'=(:])(/[A-Za-z0-9._@+-]+(?:/[A-Za-z0-9._@+-]+)+)`)

// tenantReason is a driver error as the instance's owner sees it in its
// reason and history: the host's paths (state directories, sockets, the
// operator's layout) are cut to their last element, which still names what
// failed ("…/disk.qcow2"). The agent logs the whole text for the operator.
func tenantReason(err error) string {
	return hostPath.ReplaceAllStringFunc(err.Error(), func(m string) string {
		sub := hostPath.FindStringSubmatch(m)
		return sub[1] + "…/" + path.Base(sub[2])
	})
}
