import {h, replace, field, input, select, table, fmtTime, fmtLabels, fmtMiB, confirmDialog, toast, formData, parseLabels} from '../dom.js';
import * as api from '../api.js';
import {P, navigate, onLeave} from '../app.js';
import {lineChart} from '../chart.js';

const destructive = new Set(['terminate', 'poweroff', 'stop', 'reboot']);

export function stateBadge(s) {
  return h('span.state.s-' + String(s).toLowerCase(), s);
}

// actionButtons offers the actions the instance's state allows.
export function actionButtons(project, inst, after) {
  return h('div.actions', (inst.actions || []).map(a => h('button' + (destructive.has(a) ? '.danger' : ''), {
    type: 'button', dataset: {action: a},
    onclick: async () => {
      if (destructive.has(a) && !await confirmDialog(a + ' instance ' + inst.name + '?', a)) return;
      try {
        await api.post(api.proj(project) + '/instances/' + api.enc(inst.name) + '/actions', {action: a});
        toast(a + ': ' + inst.name);
        if (after) after();
      } catch (e) { toast(e.message, 'error'); }
    },
  }, a)));
}

// The live list: rows are kept by name and changed in place as events
// come, batched per animation frame, so thousands of rows and a hundred
// changes a second stay cheap.
export async function instances({project}) {
  const base = api.proj(project);
  const rows = new Map(); // name -> {inst, tr}
  const tbody = h('tbody');
  const count = h('span', {id: 'instance-count'});
  const filterText = h('input', {type: 'search', id: 'filter-text', placeholder: 'name or label k=v'});
  const filterState = select('state', ['', 'PENDING', 'PROLOG', 'BOOT', 'RUNNING', 'SUSPENDED', 'STOPPED', 'POWEROFF', 'FAILED', 'UNKNOWN', 'HOLD'].map(s => [s, s || 'any state']), {id: 'filter-state'});
  const showAll = h('input', {type: 'checkbox', id: 'filter-all'});
  const tableEl = h('table', {id: 'instances', 'aria-label': 'Instances', dataset: {applied: '0'}},
    h('thead', h('tr', ['Name', 'State', 'Type', 'Flavor', 'Image', 'Host', 'Addresses', 'Labels'].map(t => h('th', {scope: 'col'}, t)))), tbody);

  function visible(i) {
    if (i.state === 'DONE' && !showAll.checked) return false;
    if (filterState.value && i.state !== filterState.value) return false;
    const f = filterText.value.trim();
    if (!f) return true;
    if (f.includes('=')) {
      const [k, v] = f.split('=');
      return (i.labels || {})[k.trim()] === v.trim();
    }
    return i.name.includes(f);
  }
  function fill(r) {
    const i = r.inst;
    const c = r.tr.children;
    c[1].replaceChildren(stateBadge(i.state), i.reason ? h('small.reason', i.reason) : '');
    c[5].textContent = i.host || '';
    c[6].textContent = (i.nics || []).map(n => n.ip).join(', ');
    c[7].replaceChildren(...fmtLabels(i.labels));
    r.tr.hidden = !visible(i);
    r.tr.dataset.state = i.state;
  }
  // add makes a row for an instance as it was at store revision rev.
  function add(i, rev) {
    const tr = h('tr', {dataset: {name: i.name}},
      h('td', h('a', {href: P(project) + '/instances/' + encodeURIComponent(i.name)}, i.name)),
      h('td'), h('td', i.type), h('td', i.flavor), h('td', i.image), h('td'), h('td'), h('td'));
    const r = {inst: i, tr, rev};
    rows.set(i.name, r);
    fill(r);
    return tr;
  }
  function recount() {
    let n = 0;
    for (const r of rows.values()) if (!r.tr.hidden) n++;
    count.textContent = n + ' shown of ' + rows.size;
  }
  // load shows a list. The stream may have been ahead of it: a row it
  // took past the list's view keeps what it said, and one it made that the
  // list lacks (created after the list was read) stays unless it is DONE.
  function load(items) {
    const before = new Map(rows);
    rows.clear();
    const frag = document.createDocumentFragment();
    for (const i of items.sort((a, b) => a.name < b.name ? -1 : 1)) {
      const old = before.get(i.name);
      before.delete(i.name);
      frag.appendChild(old && old.rev > i.revision ? add(old.inst, old.rev) : add(i, i.revision));
    }
    for (const old of before.values()) if (old.inst.state !== 'DONE') frag.appendChild(add(old.inst, old.rev));
    tbody.replaceChildren(frag);
    recount();
    tableEl.dataset.rows = String(rows.size);
  }
  let pending = [];
  let scheduled = false;
  let applied = 0;
  function flush() {
    scheduled = false;
    const batch = pending;
    pending = [];
    for (const {i, rev} of batch) {
      const r = rows.get(i.name);
      if (r) {
        // The stream is in order, and resumes from before the list was
        // read: what the list already shows newer is skipped.
        if (rev < r.rev) continue;
        r.inst = i;
        r.rev = rev;
        fill(r);
      } else {
        tbody.appendChild(add(i, rev));
      }
    }
    applied += batch.length;
    tableEl.dataset.applied = String(applied);
    tableEl.dataset.rows = String(rows.size);
    recount();
  }
  const refresh = () => api.list(base + '/instances?all=' + showAll.checked).then(load).catch(e => toast(e.message, 'error'));
  for (const el of [filterText, filterState]) el.addEventListener('input', () => { for (const r of rows.values()) r.tr.hidden = !r.inst || !visible(r.inst); recount(); });
  showAll.addEventListener('change', refresh);

  // The stream first, from now; then the list: a change made while the
  // list is read comes by the stream (list-then-watch, the other way
  // round, could miss it).
  let opened = false;
  const stop = await api.events('project=' + api.enc(project) + '&type=instance', ev => {
    if (ev.type !== 'instance' || !ev.object) return;
    pending.push({i: ev.object, rev: api.eventRevision(ev)});
    if (!scheduled) { scheduled = true; requestAnimationFrame(flush); }
  }, () => { if (opened) refresh(); opened = true; });
  onLeave(stop);
  const items = await api.list(base + '/instances');
  performance.mark('kumo:list-fetched');
  load(items);
  performance.mark('kumo:list-built');

  return h('div',
    h('div.page-head', h('h1', 'Instances'), h('a.button.primary', {href: P(project) + '/instances/new', id: 'new-instance'}, 'Create instance')),
    h('div.filters', {role: 'search'},
      field('Filter', filterText), field('State', filterState),
      h('div.field.check', showAll, h('label', {htmlFor: 'filter-all'}, 'Show terminated (DONE)')), count),
    h('div.table-wrap', tableEl));
}

export async function instanceNew({project}) {
  const base = api.proj(project);
  const [flavors, images, nets, sgs, groups] = await Promise.all([
    api.list('/v1/flavors'), api.list(base + '/images'), api.list(base + '/networks'),
    api.list(base + '/security-groups'), api.list(base + '/server-groups')]);
  const out = h('div', {id: 'create-result', 'aria-live': 'polite'});
  const form = h('form.create', {id: 'create-instance', onsubmit: async e => {
    e.preventDefault();
    const d = formData(form);
    d.labels = parseLabels(d.labels);
    if (!Object.keys(d.labels).length) delete d.labels;
    for (const k of ['networks', 'security_groups']) if (d[k] && !d[k].length) delete d[k];
    replace(out, h('p', 'Creating…'));
    let inst;
    try {
      inst = await api.post(base + '/instances', d);
    } catch (x) {
      replace(out, h('p.error', {role: 'alert'}, x.message));
      return;
    }
    // Wait for the scheduler's answer: placed, or why not.
    const url = base + '/instances/' + api.enc(inst.name);
    for (let n = 0; n < 20; n++) {
      inst = await api.get(url);
      if (inst.unplaceable) {
        const ex = await api.get(url + '/explain');
        replace(out, h('div.error', {role: 'alert'}, h('h2', 'Nothing fits ' + inst.name + ' now'), explainView(ex),
          h('p', h('a', {href: P(project) + '/instances/' + encodeURIComponent(inst.name)}, 'See the instance'), ' (it waits in PENDING until a host fits).')));
        return;
      }
      if (inst.state !== 'PENDING') break;
      await new Promise(r => setTimeout(r, 500));
    }
    navigate(P(project) + '/instances/' + encodeURIComponent(inst.name));
  }},
  h('h1', 'Create an instance'),
  field('Name', input('name', {required: true, autocomplete: 'off'})),
  field('Type', select('type', [['container', 'container'], ['vm', 'virtual machine']])),
  field('Flavor', select('flavor', flavors.sort((a, b) => a.vcpus - b.vcpus || a.memory_mib - b.memory_mib)
    .map(f => [f.name, f.name + ' (' + f.vcpus + ' vCPU, ' + fmtMiB(f.memory_mib) + ', ' + f.disk_gib + ' GiB)']))),
  field('Image', select('image', images.filter(i => i.status === 'active').map(i => [i.project === project ? i.name : i.project + '/' + i.name, i.name + ' (' + i.kind + ')']))),
  field('Networks', select('networks', nets.map(n => n.name), {multiple: true}), 'none: the default network, if any'),
  field('Security groups', select('security_groups', sgs.map(g => g.name), {multiple: true})),
  field('Server group', select('server_group', [['', 'none'], ...groups.map(g => [g.name, g.name + ' (' + g.policy + ')'])])),
  field('Requirements', input('requirements', {placeholder: 'ARCH = "x86_64" & FREE_MEM > 2048'})),
  field('Labels', input('labels', {placeholder: 'k=v, k2=v2'})),
  field('User data', h('textarea', {name: 'user_data', rows: 5})),
  h('button.primary', {type: 'submit'}, 'Create'),
  out);
  return form;
}

export function explainView(ex) {
  return h('div.explain',
    h('p', ex.summary, ex.policy ? ' (policy ' + ex.policy + ')' : ''),
    table([['Host', x => x.host], ['Fits', x => x.feasible ? 'yes' : 'no'], ['Why / score', x => x.feasible ? String(x.score) : x.reason]], ex.hosts || [], {label: 'Explain', empty: 'No hosts.'}));
}

export async function instanceDetail({project, name}) {
  const url = api.proj(project) + '/instances/' + api.enc(name);
  const head = h('div');
  const hist = h('ol.timeline', {'aria-label': 'State history'});
  const explainBox = h('div');
  const cpu = lineChart('CPU use (percent of one vCPU), sampled while this page is open', '%');
  const mem = lineChart('Memory (MiB)', 'MiB');
  const cpuPts = [], memPts = [];
  let last = null;
  async function refresh() {
    const [inst, history] = await Promise.all([api.get(url), api.get(url + '/history')]);
    replace(head,
      h('div.page-head', h('h1', inst.name), stateBadge(inst.state), inst.reason ? h('span.reason', inst.reason) : ''),
      actionButtons(project, inst, refresh),
      inst.state === 'RUNNING' ? h('p', h('a.button', {href: P(project) + '/instances/' + encodeURIComponent(name) + '/console', id: 'open-console'}, 'Console')) : '',
      h('dl.props',
        [['Type', inst.type], ['Flavor', inst.flavor + ' (' + inst.size.vcpus + ' vCPU, ' + fmtMiB(inst.size.memory_mib) + ', ' + inst.size.disk_gib + ' GiB)'],
        ['Image', inst.image], ['Host', inst.host || '-'], ['Home', inst.home || '-'], ['Server group', inst.server_group || '-'],
        ['Requirements', inst.requirements || '-'], ['Addresses', (inst.nics || []).map(n => n.network + ': ' + n.ip).join(', ') || '-'],
        ['Created', fmtTime(inst.created_at)], ['ID', inst.id]].map(([k, v]) => [h('dt', k), h('dd', v)]),
        h('dt', 'Labels'), h('dd', fmtLabels(inst.labels))),
      inst.user_data ? h('details', h('summary', 'User data'), h('pre.userdata', inst.user_data)) : '');
    replace(hist, (history.items || history).map(r => h('li', h('time', fmtTime(r.time)), ' ', h('span', r.from + ' → ' + r.to),
      r.host ? ' on ' + r.host : '', ' by ' + r.actor, r.reason ? h('div.reason', r.reason) : '')));
    if (inst.state === 'PENDING') replace(explainBox, explainView(await api.get(url + '/explain')));
    const u = inst.usage;
    if (u && u.at) {
      const t = new Date(u.at).getTime() / 1000;
      if (last && t > last.t) cpuPts.push([t, 100 * (u.cpu_seconds - last.cpu) / (t - last.t)]);
      if (!last || t > last.t) { memPts.push([t, u.memory_mib]); last = {t, cpu: u.cpu_seconds}; }
      cpu.update(cpuPts.slice(-120));
      mem.update(memPts.slice(-120));
    }
  }
  const stop = await api.events('project=' + api.enc(project) + '&type=instance', ev => {
    if (ev.object && ev.object.name === name) refresh().catch(() => {});
  });
  onLeave(stop);
  await refresh();
  const timer = setInterval(() => refresh().catch(() => {}), 10000);
  onLeave(() => clearInterval(timer));
  return h('div.detail', head,
    h('section', h('h2', 'Usage'), cpu, mem),
    h('section', h('h2', 'Scheduler'), h('button', {type: 'button', id: 'explain', onclick: async () => replace(explainBox, explainView(await api.get(url + '/explain')))}, 'Explain placement'), explainBox),
    h('section', h('h2', 'History'), hist));
}
