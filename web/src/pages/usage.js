import {h, replace, field, input, select, table} from '../dom.js';
import * as api from '../api.js';
import {barChart} from '../chart.js';

function isoDay(d) { return d.toISOString().slice(0, 10); }

function csv(report) {
  const q = v => /[",\n]/.test(String(v)) ? '"' + String(v).replace(/"/g, '""') + '"' : String(v);
  const lines = [['key', 'instance_seconds', 'vcpu_hours', 'memory_gib_hours', 'storage_gib_hours', 'cost_micro', 'cost'].join(',')];
  for (const g of report.groups || []) lines.push([g.key, g.instance_seconds, g.vcpu_hours, g.memory_gib_hours, g.storage_gib_hours, g.cost_micro, g.cost].map(q).join(','));
  return lines.join('\n') + '\n';
}

export async function usage({project}) {
  const now = new Date();
  const from = input('from', {type: 'date', value: isoDay(new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1))), id: 'usage-from'});
  const to = input('to', {type: 'date', value: isoDay(new Date(now.getTime() + 86400000)), id: 'usage-to'});
  const by = select('group_by', ['day', 'instance', 'flavor'], {id: 'usage-by'});
  const box = h('div', {id: 'usage-report'});
  let lastURL = '';
  async function refresh() {
    const toDate = new Date(to.value) > now ? now.toISOString() : to.value;
    const q = 'from=' + api.enc(from.value) + '&to=' + api.enc(toDate) + '&group_by=' + api.enc(by.value);
    const r = await api.get(api.proj(project) + '/usage?' + q);
    const groups = r.groups || [];
    if (lastURL) URL.revokeObjectURL(lastURL);
    lastURL = URL.createObjectURL(new Blob([csv(r)], {type: 'text/csv'}));
    replace(box,
      h('p.big', 'Total: ', h('strong', {id: 'usage-total'}, r.total.cost + ' ' + (r.currency || '')),
        ' · ' + r.total.vcpu_hours.toFixed(2) + ' vCPU-hours · ' + r.total.memory_gib_hours.toFixed(2) + ' GiB-hours of memory'),
      barChart('Cost by ' + by.value, groups.map(g => [g.key, g.cost_micro / 1e6]), v => v.toPrecision(3)),
      barChart('vCPU-hours by ' + by.value, groups.map(g => [g.key, g.vcpu_hours]), v => v.toPrecision(3)),
      table([['Key', g => g.key], ['Instance-hours', g => (g.instance_seconds / 3600).toFixed(2)], ['vCPU-hours', g => g.vcpu_hours.toFixed(2)],
        ['Memory GiB-hours', g => g.memory_gib_hours.toFixed(2)], ['Storage GiB-hours', g => g.storage_gib_hours.toFixed(2)], ['Cost', g => g.cost]], groups, {label: 'Usage'}),
      h('a.button', {href: lastURL, download: 'kumo-usage-' + project + '-' + by.value + '.csv', id: 'usage-csv'}, 'Download CSV'));
  }
  const form = h('form.inline', {onsubmit: e => { e.preventDefault(); refresh().catch(x => replace(box, h('p.error', x.message))); }},
    field('From', from), field('To', to), field('Group by', by), h('button', {type: 'submit'}, 'Show'));
  await refresh();
  return h('div', h('h1', 'Usage and cost'), form, box);
}
