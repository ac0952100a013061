import {h, replace, field, input, select, table, bar, fmtMiB, fmtTime, fmtLabels, confirmDialog, toast, formData, parseLabels} from '../dom.js';
import * as api from '../api.js';
import {onLeave} from '../app.js';
import {resourcePage} from './resources.js';
import {money} from './dashboard.js';

export async function hosts() {
  const box = h('div');
  async function refresh() {
    const items = await api.list('/v1/hosts');
    replace(box, h('div.cards', items.map(x => {
      const cap = x.capacity, al = x.allocated, r = x.ratios;
      const toggle = (k, v, label) => h('button.small' + (v ? '' : '.danger'), {type: 'button', onclick: async () => {
        if (!v && !await confirmDialog(label + ' host ' + x.name + '?', label)) return;
        try { await api.patch('/v1/hosts/' + api.enc(x.name), {[k]: v}); refresh(); } catch (e) { toast(e.message, 'error'); }
      }}, label);
      return h('section.card', {'aria-label': 'Host ' + x.name},
        h('h2', x.name), h('p', h('span.state.s-' + String(x.state).toLowerCase(), x.state), ' ', x.driver, ' · ', (x.kinds || []).join(', '),
          x.enabled ? '' : ' · disabled', x.draining ? ' · draining' : '', ' · ' + x.instances + ' instances'),
        bar('vCPUs', al.vcpus, cap.vcpus * (r.cpu || 1)), bar('Memory', al.memory_mib, Math.floor(cap.memory_mib * (r.memory || 1)), fmtMiB),
        bar('Disk (GiB)', al.disk_gib, cap.disk_gib * (r.disk || 1)),
        h('p', fmtLabels(x.attributes)), h('p.small', 'Last seen ' + fmtTime(x.last_seen)),
        h('form.quota', {onsubmit: async e => {
          e.preventDefault();
          try { await api.patch('/v1/hosts/' + api.enc(x.name), {labels: parseLabels(e.target.elements.labels.value)}); toast('Labels of ' + x.name + ' set'); refresh(); } catch (err) { toast(err.message, 'error'); }
        }}, input('labels', {value: Object.entries(x.labels || {}).map(([k, v]) => k + '=' + v).join(', '), placeholder: 'rack=r1, ssd=true', 'aria-label': 'Labels of ' + x.name}),
        h('button.small', {type: 'submit'}, 'Set labels')),
        h('div.actions', x.enabled ? toggle('enabled', false, 'Disable') : toggle('enabled', true, 'Enable'),
          x.draining ? toggle('draining', false, 'Stop draining') : toggle('draining', true, 'Drain')));
    })), items.length ? null : h('p', 'No hosts have joined.'));
  }
  onLeave(await api.events('type=host', () => refresh().catch(() => {})));
  await refresh();
  return h('div', h('h1', 'Hosts'), box);
}

export async function projects() {
  const box = h('div');
  const keys = ['instances', 'vcpus', 'memory_mib', 'disk_gib', 'networks', 'ports', 'floating_ips', 'images'];
  async function refresh() {
    const items = await api.list('/v1/projects');
    replace(box, table([
      ['Name', p => p.name], ['Description', p => p.description || ''],
      ['Usage / quota', p => h('div', keys.map(k => bar(k, (p.usage || {})[k] || 0, (p.quota || {})[k] || 0)))],
      ['Cost this month', p => money(p.month_to_date_cost_micro || 0, p.currency)],
      ['Quota', p => h('form.quota', {onsubmit: async e => {
        e.preventDefault();
        const d = formData(e.target);
        try { await api.put('/v1/projects/' + api.enc(p.name) + '/quota', {quota: {[d.key]: d.value}}); toast('Quota of ' + p.name + ' changed'); refresh(); } catch (x) { toast(x.message, 'error'); }
      }}, select('key', keys, {'aria-label': 'Quota of ' + p.name}), input('value', {type: 'number', min: 0, required: true, 'aria-label': 'New limit for ' + p.name}), h('button.small', {type: 'submit'}, 'Set'))],
      ['', p => h('button.danger.small', {type: 'button', 'aria-label': 'Delete project ' + p.name, onclick: async () => {
        if (!await confirmDialog('Delete project ' + p.name + '? It must be empty.', 'Delete')) return;
        try { await api.del('/v1/projects/' + api.enc(p.name)); toast('Deleting ' + p.name); refresh(); } catch (x) { toast(x.message, 'error'); }
      }}, 'Delete')],
    ], items, {label: 'Projects'}));
  }
  await refresh();
  const form = h('form.inline', {onsubmit: async e => {
    e.preventDefault();
    try { await api.post('/v1/projects', formData(form)); form.reset(); refresh(); } catch (x) { toast(x.message, 'error'); }
  }}, h('h2', 'Create a project'), field('Name', input('name', {required: true})), field('Description', input('description')), h('button.primary', {type: 'submit'}, 'Create'));
  return h('div', h('h1', 'Projects'), box, form);
}

export async function users() {
  const box = h('div');
  async function refresh() {
    const items = await api.list('/v1/users');
    replace(box, table([
      ['Name', u => u.name], ['Cloud admin', u => u.cloud_admin ? 'yes' : ''], ['Roles', u => (u.roles || []).map(r => r.project + ': ' + r.role).join(', ')],
      ['Grant', u => h('form.quota', {onsubmit: async e => {
        e.preventDefault();
        const d = formData(e.target);
        try { await api.put('/v1/projects/' + api.enc(d.project) + '/members/' + api.enc(u.name), {role: d.role}); refresh(); } catch (x) { toast(x.message, 'error'); }
      }}, input('project', {required: true, placeholder: 'project', 'aria-label': 'Project for ' + u.name}), select('role', ['reader', 'member', 'admin'], {'aria-label': 'Role for ' + u.name}), h('button.small', {type: 'submit'}, 'Grant'))],
      ['', u => h('button.danger.small', {type: 'button', 'aria-label': 'Delete user ' + u.name, onclick: async () => {
        if (!await confirmDialog('Delete user ' + u.name + '?', 'Delete')) return;
        try { await api.del('/v1/users/' + api.enc(u.name)); refresh(); } catch (x) { toast(x.message, 'error'); }
      }}, 'Delete')],
    ], items, {label: 'Users'}));
  }
  await refresh();
  const form = h('form.inline', {onsubmit: async e => {
    e.preventDefault();
    try { await api.post('/v1/users', formData(form)); form.reset(); refresh(); } catch (x) { toast(x.message, 'error'); }
  }}, h('h2', 'Create a user'), field('Name', input('name', {required: true})), field('Password', input('password', {type: 'password', required: true, autocomplete: 'new-password'})),
  h('div.field.check', h('input', {type: 'checkbox', name: 'cloud_admin', id: 'u-admin'}), h('label', {htmlFor: 'u-admin'}, 'Cloud admin')),
  h('button.primary', {type: 'submit'}, 'Create'));
  return h('div', h('h1', 'Users and roles'), box, form);
}

export async function flavors() {
  const prices = await api.get('/v1/prices');
  const cur = prices.currency || '';
  return resourcePage({
    title: 'Flavors and prices', url: '/v1/flavors', itemURL: f => '/v1/flavors/' + api.enc(f.name),
    cols: [['Name', f => f.name], ['vCPUs', f => String(f.vcpus)], ['Memory', f => fmtMiB(f.memory_mib)], ['Disk', f => f.disk_gib + ' GiB'],
      ['Price / hour', f => money(f.price_micro_per_hour, cur)],
      ['New price', f => h('form.quota', {onsubmit: async e => {
        e.preventDefault();
        try { await api.put('/v1/flavors/' + api.enc(f.name) + '/price', {micro_per_hour: Math.round(Number(e.target.elements.price.value) * 1e6)}); toast('Price of ' + f.name + ' changed'); } catch (x) { toast(x.message, 'error'); }
      }}, input('price', {type: 'number', step: '0.000001', min: 0, required: true, 'aria-label': 'New hourly price of ' + f.name}), h('button.small', {type: 'submit'}, 'Set'))]],
    form: {title: 'Create a flavor', fields: () => [field('Name', input('name', {required: true})), field('vCPUs', input('vcpus', {type: 'number', min: 1, required: true})),
      field('Memory (MiB)', input('memory_mib', {type: 'number', min: 1, required: true})), field('Disk (GiB)', input('disk_gib', {type: 'number', min: 0})),
      field('Price / hour (micro)', input('price_micro_per_hour', {type: 'number', min: 0}))]},
  });
}
