// The public REST API, as the browser sees it: the session cookie
// authenticates (the page never holds the token), and every write carries
// the session's CSRF token.
let csrf = '';

export class APIError extends Error {
  constructor(status, body) {
    super((body && body.error && body.error.message) || ('HTTP ' + status));
    this.status = status;
    this.code = body && body.error && body.error.code;
    this.field = body && body.error && body.error.field;
  }
}

function csrfFromCookie() {
  const m = document.cookie.match(/(?:^|;\s*)__Host-kumo_csrf=([^;]+)/);
  return m ? m[1] : '';
}

export async function call(method, path, body, opts = {}) {
  const headers = {Accept: 'application/json'};
  if (method !== 'GET' && method !== 'HEAD') headers['X-CSRF-Token'] = csrf || csrfFromCookie();
  let payload;
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    payload = JSON.stringify(body);
  }
  const res = await fetch(path, {method, headers, body: payload, credentials: 'same-origin', signal: opts.signal});
  if (res.status === 204) return null;
  const ct = res.headers.get('Content-Type') || '';
  const data = ct.includes('json') ? await res.json() : await res.text();
  if (!res.ok) {
    const err = new APIError(res.status, data);
    if (res.status === 401 && !opts.quiet) window.dispatchEvent(new CustomEvent('kumo:unauthorized'));
    throw err;
  }
  return data;
}

export const get = (path, opts) => call('GET', path, undefined, opts);
export const post = (path, body) => call('POST', path, body === undefined ? {} : body);
export const del = path => call('DELETE', path);
export const patch = (path, body) => call('PATCH', path, body);
export const put = (path, body) => call('PUT', path, body);

// list fetches every page of a list endpoint.
export async function list(path) {
  const items = [];
  let after = '';
  for (let i = 0; i < 100; i++) {
    const sep = path.includes('?') ? '&' : '?';
    const page = await get(path + (after ? sep + 'after=' + encodeURIComponent(after) : ''));
    items.push(...(page.items || []));
    if (!page.next) break;
    after = page.next;
  }
  return items;
}

export async function login(creds) {
  const s = await call('POST', '/v1/session', creds, {quiet: true});
  csrf = s.csrf_token || '';
  return s;
}

export async function session() {
  const s = await call('GET', '/v1/session', undefined, {quiet: true});
  csrf = s.csrf_token || '';
  return s;
}

export async function logout() {
  try { await del('/v1/session'); } finally { csrf = ''; }
}

export const enc = encodeURIComponent;
export const proj = p => '/v1/projects/' + enc(p);

// upload PUTs a file's bytes with progress (fetch has no upload progress).
export function upload(path, file, onProgress) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    x.open('PUT', path);
    x.setRequestHeader('Content-Type', 'application/octet-stream');
    x.setRequestHeader('X-CSRF-Token', csrf || csrfFromCookie());
    x.upload.onprogress = e => { if (e.lengthComputable) onProgress(e.loaded, e.total); };
    x.onload = () => {
      let data = null;
      try { data = JSON.parse(x.responseText); } catch { /* not JSON */ }
      if (x.status >= 200 && x.status < 300) resolve(data);
      else reject(new APIError(x.status, data));
    };
    x.onerror = () => reject(new Error('upload failed: network error'));
    x.send(file);
  });
}

// events follows the event stream (server-sent events) from the moment it
// is called, and resolves to a function that stops it; fn gets each event.
// It asks the server where its events are now (events_after) and resumes
// the stream from there, so an event that happens before the stream's
// connection is made is still delivered: a page calls it before it lists
// what it shows, and nothing between its list and its stream is missed
// (the stream alone starts when the server takes the connection, which
// can be after the list was answered). onOpen runs at each (re)connection;
// a reconnection resumes after the last event received (Last-Event-ID).
export async function events(query, fn, onOpen) {
  const info = await get('/v1');
  const es = new EventSource('/v1/events?' + (query ? query + '&' : '') + 'since=' + encodeURIComponent(info.events_after));
  const handler = e => { try { fn(JSON.parse(e.data)); } catch { /* a malformed event is skipped */ } };
  for (const t of ['agent', 'budget', 'flavor', 'host', 'image', 'instance', 'jointoken', 'network', 'operation', 'port', 'price', 'project', 'servergroup', 'securitygroup', 'floatingip', 'token', 'user']) {
    es.addEventListener(t, handler);
  }
  es.addEventListener('message', handler);
  if (onOpen) es.addEventListener('open', onOpen);
  return () => es.close();
}

// eventRevision is the store revision that wrote an event: its ID is
// revision*4096 plus its place in the transaction (api/openapi.yaml,
// Event). An object in an event is as that revision left it, so it
// compares with a listed object's `revision`.
export const eventRevision = ev => Math.floor(ev.id / 4096);

// recentEvents reads the kept events (follow=false) and returns the last n.
export async function recentEvents(query, n) {
  const res = await fetch('/v1/events?follow=false' + (query ? '&' + query : ''), {credentials: 'same-origin'});
  if (!res.ok) throw new APIError(res.status, null);
  const text = await res.text();
  const out = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('data: ')) continue;
    try { out.push(JSON.parse(line.slice(6))); } catch { /* skipped */ }
  }
  return out.slice(-n).reverse();
}
