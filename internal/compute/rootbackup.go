package compute

// An instance restored from an instance backup that kept its own root
// disk (internal/volumes/rootbackups.go) carries the id of that volume
// backup in its record and its assignment: the agent of the host it is
// placed on makes its disk of it in PROLOG, and may read
// that backup because of it. Once the agent reports it prepared (BOOT)
// the backup is no longer the instance's: a later PROLOG (an HA
// instance recreated elsewhere) starts it from its image, as any.

// RestoresRoot says whether an instance on one of these hosts has its
// root disk made from this backup.
func (svc *Service) RestoresRoot(hosts map[string]bool, backup string) bool {
	svc.cache.mu.RLock()
	defer svc.cache.mu.RUnlock()
	for _, e := range svc.cache.instances {
		if backup != "" && e.rec.RootBackup == backup && onHost(e.rec.State) && hosts[e.rec.Host] {
			return true
		}
	}
	return false
}
