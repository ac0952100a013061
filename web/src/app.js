// What pages share: the session, the current project, navigation, and
// what to stop when a page is left.
export const state = {session: null, project: ''};

let renderFn = () => {};
export function setRender(fn) { renderFn = fn; }

export function navigate(path, replaceState = false) {
  if (replaceState) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  renderFn();
}

let cleanups = [];
// onLeave registers what to stop when the page is left (streams, sockets).
export function onLeave(fn) { cleanups.push(fn); }
export function leave() {
  for (const f of cleanups) { try { f(); } catch { /* already gone */ } }
  cleanups = [];
}

export const P = project => '/p/' + encodeURIComponent(project);
