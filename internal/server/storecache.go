package server

// cachedPrefixes are the store prefixes the server reads from memory
// (store.Cached): what a create or an authenticated request reads every
// time and what is written rarely - tokens, users and agents (every
// request's credentials), projects and their quota records, flavors and
// images. Instances, events, operations and idempotency records are
// written as often as read and stay in the store.
var cachedPrefixes = []string{
	"/tokens/", "/users/", "/agents/",
	"/projects/", "/quota/",
	"/flavors/", "/images/",
}
