// Building the page. Every string from the API goes in as a text node or a
// property value: nothing here parses markup (no HTML-string sinks in the
// app), so names, labels, user-data and console output cannot inject it.

// h makes an element: h('a.btn', {href: '/x', onclick: f}, 'text', child, [more]).
export function h(spec, attrs, ...children) {
  const [tag, ...classes] = spec.split('.');
  const el = document.createElement(tag || 'div');
  if (classes.length) el.className = classes.join(' ');
  if (attrs && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k in el && k !== 'list' && k !== 'form') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

// replace empties el and fills it with children.
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const svgNS = 'http://www.w3.org/2000/svg';
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children) {
    if (c instanceof Node) el.appendChild(c);
    else if (c !== undefined && c !== null) el.appendChild(document.createTextNode(String(c)));
  }
  return el;
}

export function fmtTime(t) {
  if (!t) return '';
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toLocaleString();
}

export function fmtMiB(m) {
  return m >= 1024 ? (m / 1024).toFixed(m % 1024 ? 1 : 0) + ' GiB' : m + ' MiB';
}

export function fmtBytes(b) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < units.length - 1) { b /= 1024; i++; }
  return (i ? b.toFixed(1) : b) + ' ' + units[i];
}

export function fmtLabels(labels) {
  return Object.entries(labels || {}).map(([k, v]) => h('span.label', k + '=' + v));
}

// table renders rows of objects; cols are [header, row => cell].
export function table(cols, rows, opts = {}) {
  const body = h('tbody');
  for (const r of rows) body.appendChild(h('tr', cols.map(([, f]) => h('td', f(r)))));
  if (!rows.length) body.appendChild(h('tr', h('td.empty', {colSpan: cols.length}, opts.empty || 'Nothing here yet.')));
  return h('div.table-wrap', h('table', {'aria-label': opts.label || ''}, h('thead', h('tr', cols.map(([t]) => h('th', {scope: 'col'}, t)))), body));
}

let fieldSeq = 0;
// field is a labelled control: field('Name', h('input', {name: 'name'})).
export function field(label, control, hint) {
  const id = control.id || (control.id = 'f' + (++fieldSeq));
  return h('div.field', h('label', {htmlFor: id}, label), control, hint ? h('small', hint) : null);
}

export function input(name, attrs = {}) {
  return h('input', {name, ...attrs});
}

export function select(name, options, attrs = {}) {
  return h('select', {name, ...attrs}, options.map(o => {
    const [value, text] = Array.isArray(o) ? o : [o, o];
    return h('option', {value}, text);
  }));
}

// bar is a labelled progress bar (quotas, capacity).
export function bar(label, used, total, fmt = String) {
  const pct = total > 0 ? Math.min(100, Math.round(100 * used / total)) : 0;
  return h('div.bar', h('div.bar-label', h('span', label), h('span', fmt(used) + ' / ' + (total > 0 ? fmt(total) : '∞'))),
    h('progress', {max: 100, value: pct, 'aria-label': label + ': ' + pct + '%'}));
}

// confirmDialog asks before a destructive action; resolves true or false.
export function confirmDialog(message, okText = 'Confirm') {
  return new Promise(resolve => {
    const dlg = h('dialog.confirm', {'aria-label': 'Confirm'},
      h('form', {method: 'dialog'},
        h('p', message),
        h('div.actions',
          h('button', {value: 'cancel', type: 'submit'}, 'Cancel'),
          h('button.danger', {value: 'ok', type: 'submit'}, okText))));
    dlg.addEventListener('close', () => { resolve(dlg.returnValue === 'ok'); dlg.remove(); });
    document.body.appendChild(dlg);
    dlg.showModal();
  });
}

// toast shows a message for a while (errors stay until dismissed).
export function toast(message, kind = 'info') {
  let box = document.getElementById('toasts');
  if (!box) {
    box = h('div', {id: 'toasts', role: 'status', 'aria-live': 'polite'});
    document.body.appendChild(box);
  }
  const t = h('div.toast.' + kind, h('span', message), h('button', {type: 'button', 'aria-label': 'Dismiss', onclick: () => t.remove()}, '×'));
  box.appendChild(t);
  if (kind !== 'error') setTimeout(() => t.remove(), 5000);
}

// formData collects a form's named controls into an object (empty ones left out).
export function formData(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name || el.disabled) continue;
    if (el.type === 'checkbox') { out[el.name] = el.checked; continue; }
    if (el.multiple) { out[el.name] = [...el.selectedOptions].map(o => o.value); continue; }
    if (el.value !== '') out[el.name] = el.type === 'number' ? Number(el.value) : el.value;
  }
  return out;
}

// parseLabels reads "k=v, k2=v2".
export function parseLabels(s) {
  const out = {};
  for (const part of (s || '').split(',')) {
    const [k, ...v] = part.split('=');
    if (k.trim()) out[k.trim()] = v.join('=').trim();
  }
  return out;
}
