import {h, replace, field, input, table, fmtTime, confirmDialog, toast, formData} from '../dom.js';
import * as api from '../api.js';
import {onLeave} from '../app.js';
import {eventTable} from './dashboard.js';

export async function tokens() {
  const box = h('div');
  const secretBox = h('div', {'aria-live': 'polite'});
  async function refresh() {
    const items = await api.list('/v1/tokens');
    replace(box, table([['ID', t => t.id], ['Description', t => t.description || ''], ['Created', t => fmtTime(t.created_at)],
      ['Expires', t => fmtTime(t.expires_at)], ['Revoked', t => t.revoked ? 'yes' : ''],
      ['', t => t.revoked ? '' : h('button.danger.small', {type: 'button', 'aria-label': 'Revoke token ' + t.id, onclick: async () => {
        if (!await confirmDialog('Revoke token ' + t.id + '? Whatever uses it stops working.', 'Revoke')) return;
        try { await api.del('/v1/tokens/' + api.enc(t.id)); refresh(); } catch (e) { toast(e.message, 'error'); }
      }}, 'Revoke')]], items, {label: 'Tokens'}));
  }
  await refresh();
  const form = h('form.inline', {onsubmit: async e => {
    e.preventDefault();
    const d = formData(form);
    if (d.ttl_hours) { d.ttl_seconds = d.ttl_hours * 3600; delete d.ttl_hours; }
    try {
      const t = await api.post('/v1/tokens', d);
      replace(secretBox, h('div.notice', h('p', 'Your new token (shown once):'), h('code.secret', t.secret)));
      form.reset();
      refresh();
    } catch (x) { toast(x.message, 'error'); }
  }}, h('h2', 'Make an API token'), field('Description', input('description')), field('Lifetime (hours)', input('ttl_hours', {type: 'number', min: 1})),
  h('button.primary', {type: 'submit'}, 'Make token'));
  return h('div', h('h1', 'Tokens'), box, form, secretBox);
}

export async function operations({project}) {
  const box = h('div');
  async function refresh() {
    const items = await api.list(api.proj(project) + '/operations');
    items.sort((a, b) => a.created_at < b.created_at ? 1 : -1);
    replace(box, table([['Created', o => fmtTime(o.created_at)], ['Kind', o => o.kind], ['Description', o => o.description], ['Status', o => o.status],
      ['Progress', o => h('progress', {max: 100, value: o.progress || 0, 'aria-label': 'Progress of ' + o.id})], ['Resource', o => o.resource], ['Error', o => o.error || '']], items, {label: 'Operations'}));
  }
  onLeave(await api.events('project=' + api.enc(project) + '&type=operation', () => refresh().catch(() => {})));
  await refresh();
  return h('div', h('h1', 'Operations'), box);
}

export async function eventsPage({project}) {
  // The stream from now first, then the kept events, newest first; what
  // came by the stream meanwhile and what both have are merged by ID.
  const box = h('div');
  let evs = null;
  const early = [];
  const add = ev => {
    if (evs.length && ev.id <= evs[0].id) return;
    evs.unshift(ev);
    if (evs.length > 200) evs.length = 200;
  };
  onLeave(await api.events('project=' + api.enc(project), ev => {
    if (!evs) { early.push(ev); return; }
    add(ev);
    replace(box, eventTable(evs));
  }));
  evs = await api.recentEvents('project=' + api.enc(project), 200);
  early.forEach(add);
  replace(box, eventTable(evs));
  return h('div', h('h1', 'Events'), h('p', 'Newest first; new events appear as they happen.'), box);
}
