import {h, bar, table, fmtTime, fmtMiB, input, toast} from '../dom.js';
import * as api from '../api.js';
import {P, state, navigate} from '../app.js';

export function money(micro, currency) {
  return (micro / 1e6).toFixed(2) + (currency ? ' ' + currency : '');
}

export function eventTable(evs) {
  return table([
    ['Time', e => fmtTime(e.time)],
    ['Type', e => e.type],
    ['Action', e => e.action],
    ['Resource', e => e.resource],
    ['Actor', e => e.actor],
  ], evs, {label: 'Events', empty: 'No events.'});
}

export async function dashboard({project}) {
  const base = api.proj(project);
  const [p, insts, evs] = await Promise.all([
    api.get(base),
    api.list(base + '/instances'),
    api.recentEvents('project=' + api.enc(project), 10).catch(() => []),
  ]);
  const byState = {};
  for (const i of insts) byState[i.state] = (byState[i.state] || 0) + 1;
  const q = p.quota || {}, u = p.usage || {};
  const quotas = [['Instances', 'instances', String], ['vCPUs', 'vcpus', String], ['Memory', 'memory_mib', fmtMiB], ['Disk (GiB)', 'disk_gib', String],
    ['Networks', 'networks', String], ['Ports', 'ports', String], ['Floating IPs', 'floating_ips', String], ['Images', 'images', String]];
  const budget = p.budget_micro ? bar('Budget', p.month_to_date_cost_micro, p.budget_micro, m => money(m, p.currency)) : h('p', 'No budget set.');
  const s = state.session;
  const mayBudget = s.cloud_admin || (s.roles || []).some(r => r.project === project && r.role === 'admin');
  const budgetForm = !mayBudget ? null : h('form.quota', {onsubmit: async e => {
    e.preventDefault();
    try {
      await api.patch(base, {budget_micro: Math.round(Number(e.target.elements.budget.value) * 1e6)});
      toast('Budget set');
      navigate(location.pathname, true);
    } catch (x) { toast(x.message, 'error'); }
  }}, input('budget', {type: 'number', min: 0, step: '0.01', required: true, 'aria-label': 'Monthly budget', placeholder: 'monthly budget'}), h('button.small', {type: 'submit'}, 'Set budget'));
  return h('div.dashboard',
    h('h1', 'Dashboard: ' + project),
    h('div.cards',
      h('section.card', {'aria-labelledby': 'dash-states'}, h('h2', {id: 'dash-states'}, 'Instances by state'),
        Object.keys(byState).length ? h('ul.states', Object.entries(byState).sort().map(([s, n]) =>
          h('li', h('span.state.s-' + s.toLowerCase(), s), ' ', h('strong', String(n))))) : h('p', 'No instances. ', h('a', {href: P(project) + '/instances/new'}, 'Create one'))),
      h('section.card', {'aria-labelledby': 'dash-cost'}, h('h2', {id: 'dash-cost'}, 'Cost this month'),
        h('p.big', {id: 'month-cost'}, money(p.month_to_date_cost_micro || 0, p.currency)), budget, budgetForm),
      h('section.card.wide', {'aria-labelledby': 'dash-quota'}, h('h2', {id: 'dash-quota'}, 'Quota'),
        quotas.map(([label, k, f]) => bar(label, u[k] || 0, q[k] || 0, f)))),
    h('section', h('h2', 'Recent events'), eventTable(evs)));
}
