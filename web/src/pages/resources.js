import {h, replace, field, input, select, table, fmtTime, fmtLabels, fmtBytes, confirmDialog, toast, formData, parseLabels} from '../dom.js';
import * as api from '../api.js';
import {P, onLeave} from '../app.js';

// resourcePage is a list with a create form and delete buttons: the shape
// of most of the API's resources.
export async function resourcePage({title, url, cols, form, itemURL, live, extra, empty}) {
  const box = h('div');
  async function refresh() {
    const items = await api.list(url);
    const all = [...cols];
    if (itemURL) {
      all.push(['', x => h('button.danger.small', {type: 'button', 'aria-label': 'Delete ' + (x.name || x.ip), onclick: async () => {
        if (!await confirmDialog('Delete ' + (x.name || x.ip) + '?', 'Delete')) return;
        try { await api.del(itemURL(x)); toast('Deleted ' + (x.name || x.ip)); refresh(); } catch (e) { toast(e.message, 'error'); }
      }}, 'Delete')]);
    }
    replace(box, table(all, items, {label: title, empty}));
  }
  // The stream from now first, then the list: nothing changed between
  // them is missed (api.events).
  if (live) onLeave(await api.events(live, () => refresh().catch(() => {})));
  await refresh();
  let formEl = null;
  if (form) {
    const out = h('p.error', {role: 'alert'});
    formEl = h('form.inline', {'aria-label': 'Create', onsubmit: async e => {
      e.preventDefault();
      replace(out);
      const d = formData(formEl);
      if ('labels' in d) { d.labels = parseLabels(d.labels); if (!Object.keys(d.labels).length) delete d.labels; }
      try {
        await api.post(url, form.body ? form.body(d) : d);
        formEl.reset();
        toast('Created');
        refresh();
      } catch (x) { replace(out, x.message); }
    }}, h('h2', form.title), form.fields(), h('button.primary', {type: 'submit'}, 'Create'), out);
  }
  return h('div', h('h1', title), box, extra || null, formEl);
}

export async function networks({project}) {
  const base = api.proj(project);
  return resourcePage({
    title: 'Networks', url: base + '/networks', live: 'project=' + api.enc(project) + '&type=network',
    itemURL: n => base + '/networks/' + api.enc(n.name),
    cols: [['Name', n => n.name], ['CIDR', n => n.subnet.cidr], ['Gateway', n => n.subnet.gateway || ''], ['DHCP', n => n.subnet.dhcp ? 'yes' : 'no'],
      ['Shared', n => n.shared ? 'yes' : ''], ['External', n => n.external ? 'yes' : ''], ['Project', n => n.project], ['Labels', n => fmtLabels(n.labels)]],
    form: {title: 'Create a network', fields: () => [
      field('Name', input('name', {required: true, id: 'net-name'})),
      field('CIDR', input('cidr', {required: true, placeholder: '10.0.0.0/24', id: 'net-cidr'})),
      field('Labels', input('labels', {placeholder: 'k=v'}))]},
  });
}

export async function ports({project}) {
  const base = api.proj(project);
  const nets = await api.list(base + '/networks');
  return resourcePage({
    title: 'Ports', url: base + '/ports', itemURL: p => base + '/ports/' + api.enc(p.name),
    cols: [['Name', p => p.name], ['Network', p => p.network], ['IP', p => p.ip], ['MAC', p => p.mac], ['Instance', p => p.instance || ''], ['Host', p => p.host || '']],
    form: {title: 'Create a port', fields: () => [
      field('Name', input('name', {required: true})), field('Network', select('network', nets.map(n => n.name))),
      field('IP (optional)', input('ip'))]},
  });
}

function ruleText(r) {
  const ports = r.port_min ? (r.port_max && r.port_max !== r.port_min ? r.port_min + '-' + r.port_max : String(r.port_min)) : 'all';
  return r.direction + ' ' + r.protocol + ' ' + ports + ' ' + (r.remote_cidr || r.remote_group || '');
}

export async function securityGroups({project}) {
  const base = api.proj(project);
  return resourcePage({
    title: 'Security groups', url: base + '/security-groups', itemURL: g => base + '/security-groups/' + api.enc(g.name),
    cols: [['Name', g => h('a', {href: P(project) + '/security-groups/' + encodeURIComponent(g.name)}, g.name)], ['Description', g => g.description || ''],
      ['Rules', g => String((g.rules || []).length)], ['Labels', g => fmtLabels(g.labels)]],
    form: {title: 'Create a security group', fields: () => [
      field('Name', input('name', {required: true, id: 'sg-name'})), field('Description', input('description'))]},
  });
}

export async function securityGroup({project, name}) {
  const url = api.proj(project) + '/security-groups/' + api.enc(name);
  const box = h('div');
  async function refresh() {
    const g = await api.get(url);
    replace(box, h('p', g.description || ''), table([['Rule', ruleText], ['', r => h('button.danger.small', {type: 'button', 'aria-label': 'Remove rule ' + ruleText(r), onclick: async () => {
      if (!await confirmDialog('Remove rule ' + ruleText(r) + '?', 'Remove')) return;
      try { await api.del(url + '/rules/' + api.enc(r.id)); refresh(); } catch (e) { toast(e.message, 'error'); }
    }}, 'Remove')]], g.rules || [], {label: 'Rules', empty: 'No rules: nothing comes in.'}));
  }
  await refresh();
  const out = h('p.error', {role: 'alert'});
  const form = h('form.inline', {id: 'rule-form', onsubmit: async e => {
    e.preventDefault();
    replace(out);
    const d = formData(form);
    try { await api.post(url + '/rules', d); form.reset(); toast('Rule added'); refresh(); } catch (x) { replace(out, x.message); }
  }}, h('h2', 'Add a rule'),
  field('Direction', select('direction', ['ingress', 'egress'])),
  field('Protocol', select('protocol', ['tcp', 'udp', 'icmp', 'any'])),
  field('Port from', input('port_min', {type: 'number', min: 1, max: 65535, id: 'rule-port-min'})),
  field('Port to', input('port_max', {type: 'number', min: 1, max: 65535})),
  field('Remote CIDR', input('remote_cidr', {placeholder: '0.0.0.0/0', id: 'rule-cidr'})),
  field('Remote group', input('remote_group')),
  h('button.primary', {type: 'submit'}, 'Add rule'), out);
  return h('div', h('h1', 'Security group ' + name), box, form);
}

export async function floatingIPs({project}) {
  const base = api.proj(project);
  const [nets, insts] = await Promise.all([api.list(base + '/networks'), api.list(base + '/instances')]);
  const page = await resourcePage({
    title: 'Floating IPs', url: base + '/floating-ips', itemURL: f => base + '/floating-ips/' + api.enc(f.ip),
    cols: [['IP', f => f.ip], ['Network', f => f.network], ['Instance', f => f.instance || ''], ['Fixed IP', f => f.fixed_ip || ''],
      ['Attach', f => f.instance ? h('button.small', {type: 'button', onclick: () => api.post(base + '/floating-ips/' + api.enc(f.ip) + '/detach').then(() => location.reload(), e => toast(e.message, 'error'))}, 'Detach')
        : h('form.attach', {onsubmit: e => {
          e.preventDefault();
          api.post(base + '/floating-ips/' + api.enc(f.ip) + '/attach', {instance: e.target.elements.instance.value}).then(() => location.reload(), x => toast(x.message, 'error'));
        }}, select('instance', insts.map(i => i.name), {'aria-label': 'Instance for ' + f.ip}), h('button.small', {type: 'submit'}, 'Attach'))]],
    form: {title: 'Take a floating IP', fields: () => [field('External network', select('network', nets.filter(n => n.external).map(n => n.name)))]},
  });
  return page;
}

export async function serverGroups({project}) {
  const base = api.proj(project);
  return resourcePage({
    title: 'Server groups', url: base + '/server-groups', itemURL: g => base + '/server-groups/' + api.enc(g.name),
    cols: [['Name', g => g.name], ['Policy', g => g.policy + (g.hard ? ' (hard)' : ' (soft)')], ['Members', g => (g.members || []).join(', ')]],
    form: {title: 'Create a server group', fields: () => [
      field('Name', input('name', {required: true})), field('Policy', select('policy', ['anti-affinity', 'affinity'])),
      h('div.field.check', h('input', {type: 'checkbox', name: 'soft', id: 'sg-soft'}), h('label', {htmlFor: 'sg-soft'}, 'Soft (best effort)'))]},
  });
}

export async function images({project}) {
  const base = api.proj(project);
  const box = h('div');
  async function refresh() {
    const items = await api.list(base + '/images');
    replace(box, table([
      ['Name', i => i.project === project ? i.name : i.project + '/' + i.name], ['Kind', i => i.kind], ['Format', i => i.format],
      ['Status', i => h('span', {dataset: {status: i.status}}, i.status, i.error ? ' (' + i.error + ')' : '')], ['Size', i => fmtBytes(i.size || 0)],
      ['Visibility', i => i.project !== project ? i.visibility : h('select', {'aria-label': 'Visibility of ' + i.name, onchange: async e => {
        const v = e.target.value;
        const body = {visibility: v};
        if (v === 'shared') {
          const to = prompt('Share with which projects (comma-separated)?', (i.shared_with || []).join(','));
          if (to === null) { e.target.value = i.visibility; return; }
          body.shared_with = to.split(',').map(s => s.trim()).filter(Boolean);
        }
        try { await api.patch(base + '/images/' + api.enc(i.name), body); toast('Visibility of ' + i.name + ': ' + v); refresh(); } catch (x) { toast(x.message, 'error'); e.target.value = i.visibility; }
      }}, ['private', 'shared', 'public'].map(v => h('option', {value: v, selected: v === i.visibility}, v)))],
      ['Shared with', i => (i.shared_with || []).join(', ')],
      ['Labels', i => fmtLabels(i.labels)],
      ['', i => i.project !== project ? '' : h('button.danger.small', {type: 'button', 'aria-label': 'Delete image ' + i.name, onclick: async () => {
        if (!await confirmDialog('Delete image ' + i.name + '?', 'Delete')) return;
        try { await api.del(base + '/images/' + api.enc(i.name)); refresh(); } catch (x) { toast(x.message, 'error'); }
      }}, 'Delete')],
    ], items, {label: 'Images'}));
  }
  onLeave(await api.events('project=' + api.enc(project) + '&type=image', () => refresh().catch(() => {})));
  await refresh();
  const shares = await api.list(base + '/image-shares').catch(() => []);
  const progress = h('progress', {id: 'upload-progress', max: 100, value: 0, 'aria-label': 'Upload progress'});
  const pct = h('span', {id: 'upload-pct'}, '');
  const out = h('p', {role: 'status'});
  const file = h('input', {type: 'file', name: 'file', id: 'image-file', required: true});
  const form = h('form.inline', {id: 'upload-form', onsubmit: async e => {
    e.preventDefault();
    const d = formData(form);
    delete d.file;
    const f = file.files[0];
    if (!f) return;
    replace(out, 'Registering…');
    try {
      await api.post(base + '/images', d);
      await api.upload(base + '/images/' + api.enc(d.name) + '/file', f, (done, total) => {
        progress.value = Math.round(100 * done / total);
        pct.textContent = progress.value + '% (' + fmtBytes(done) + ' of ' + fmtBytes(total) + ')';
      });
      replace(out, 'Uploaded ' + d.name);
      refresh();
    } catch (x) { replace(out, h('span.error', x.message)); }
  }}, h('h2', 'Upload an image'),
  field('Name', input('name', {required: true, id: 'image-name'})),
  field('Kind', select('kind', ['container-rootfs', 'vm-disk'], {id: 'image-kind'})),
  field('Format', select('format', [['', 'default'], 'tar', 'tar.gz', 'qcow2', 'raw'], {id: 'image-format'})),
  field('File', file),
  h('button.primary', {type: 'submit'}, 'Upload'), h('div.progress', progress, pct), out);
  const shareBox = shares.length ? h('section', h('h2', 'Offered by other projects'), table([
    ['Image', s => s.owner + '/' + s.name], ['Status', s => s.status],
    ['', s => h('div', ['accepted', 'rejected'].map(st => h('button.small', {type: 'button', onclick: () => api.put(base + '/image-shares/' + api.enc(s.owner) + '/' + api.enc(s.name), {status: st}).then(() => toast(st), x => toast(x.message, 'error'))}, st === 'accepted' ? 'Accept' : 'Reject')))],
  ], shares, {label: 'Image shares'})) : null;
  return h('div', h('h1', 'Images'), box, shareBox, form);
}

