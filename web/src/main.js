// kumo's web console: a small single-page app over the public REST API and
// the event stream. Routes are paths (the server answers every non-API
// path with this app); state is in memory only.
import {h, replace, toast} from './dom.js';
import * as api from './api.js';
import {state, navigate, leave, setRender} from './app.js';
import {dashboard} from './pages/dashboard.js';
import {instances, instanceNew, instanceDetail} from './pages/instances.js';
import {images, networks, ports, securityGroups, securityGroup, floatingIPs, serverGroups} from './pages/resources.js';
import {usage} from './pages/usage.js';
import {tokens, operations, eventsPage} from './pages/account.js';
import {hosts, projects, users, flavors} from './pages/admin.js';


const routes = [
  ['/login', loginPage, {public: true}],
  ['/p/:project/dashboard', dashboard],
  ['/p/:project/instances', instances],
  ['/p/:project/instances/new', instanceNew],
  ['/p/:project/instances/:name', instanceDetail],
  ['/p/:project/instances/:name/console', p => import('./pages/console.js').then(m => m.consolePage(p))],
  ['/p/:project/images', images],
  ['/p/:project/networks', networks],
  ['/p/:project/ports', ports],
  ['/p/:project/security-groups', securityGroups],
  ['/p/:project/security-groups/:name', securityGroup],
  ['/p/:project/floating-ips', floatingIPs],
  ['/p/:project/server-groups', serverGroups],
  ['/p/:project/usage', usage],
  ['/p/:project/operations', operations],
  ['/p/:project/events', eventsPage],
  ['/tokens', tokens],
  ['/admin/hosts', hosts, {admin: true}],
  ['/admin/projects', projects, {admin: true}],
  ['/admin/users', users, {admin: true}],
  ['/admin/flavors', flavors, {admin: true}],
];

function match(path) {
  const parts = path.split('/').filter(Boolean);
  for (const [pattern, page, opts] of routes) {
    const ps = pattern.split('/').filter(Boolean);
    if (ps.length !== parts.length) continue;
    const params = {};
    let ok = true;
    ps.forEach((p, i) => {
      if (p.startsWith(':')) params[p.slice(1)] = decodeURIComponent(parts[i]);
      else if (p !== parts[i]) ok = false;
    });
    if (ok) return {page, params, opts: opts || {}};
  }
  return null;
}


function projectsOf(s) {
  return (s.roles || []).map(r => r.project).sort();
}

function home() {
  const s = state.session;
  const p = state.project || s.default_project || projectsOf(s)[0];
  return p ? '/p/' + encodeURIComponent(p) + '/dashboard' : (s.cloud_admin ? '/admin/projects' : '/tokens');
}

async function render() {
  leave();
  const root = document.getElementById('app');
  const path = location.pathname;
  if (!state.session && path !== '/login') {
    try { state.session = await api.session(); } catch { navigate('/login?next=' + encodeURIComponent(path + location.search), true); return; }
  }
  const m = path === '/' ? null : match(path);
  if (!m) {
    if (state.session) navigate(home(), true);
    else navigate('/login', true);
    return;
  }
  if (m.opts.public) { replace(root, await m.page(m.params)); rendered(); return; }
  if (m.params.project) state.project = m.params.project;
  const main = h('main', {id: 'main', tabIndex: -1}, h('p.loading', 'Loading…'));
  // Pages outside a project (tokens, admin) keep the last project's menu.
  const s = state.session;
  replace(root, shell(m.params.project || state.project || s.default_project || projectsOf(s)[0]), main);
  try {
    const content = await m.page(m.params);
    replace(main, content);
  } catch (e) {
    replace(main, h('div.error', {role: 'alert'}, h('h1', 'Something went wrong'), h('p', e.message)));
  }
  const h1 = main.querySelector('h1');
  document.title = (h1 ? h1.textContent + ' · ' : '') + 'kumo';
  rendered();
}

// rendered marks when a page is on screen (the benchmarks read it).
function rendered() {
  performance.mark('kumo:rendered');
}

function link(href, text, current) {
  return h('a', {href, 'aria-current': current ? 'page' : false}, text);
}

function shell(project) {
  const s = state.session;
  const here = location.pathname;
  const projects = projectsOf(s);
  if (s.cloud_admin && project && !projects.includes(project)) projects.push(project);
  const picker = h('select', {id: 'project-picker', 'aria-label': 'Project', onchange: e => navigate('/p/' + encodeURIComponent(e.target.value) + '/dashboard')},
    projects.map(p => h('option', {value: p, selected: p === project}, p)));
  if (!project) picker.prepend(h('option', {value: '', selected: true, disabled: true}, 'Pick a project'));
  const P = project ? '/p/' + encodeURIComponent(project) : '';
  const nav = [];
  if (P) {
    for (const [path, text] of [['/dashboard', 'Dashboard'], ['/instances', 'Instances'], ['/images', 'Images'], ['/networks', 'Networks'],
      ['/ports', 'Ports'], ['/security-groups', 'Security groups'], ['/floating-ips', 'Floating IPs'], ['/server-groups', 'Server groups'],
      ['/usage', 'Usage'], ['/operations', 'Operations'], ['/events', 'Events']]) {
      nav.push(h('li', link(P + path, text, here === P + path || (path !== '/dashboard' && here.startsWith(P + path + '/')))));
    }
  }
  nav.push(h('li', link('/tokens', 'Tokens', here === '/tokens')));
  const admin = s.cloud_admin ? h('li.admin', h('span.nav-head', 'Cloud admin'), h('ul',
    [['/admin/hosts', 'Hosts'], ['/admin/projects', 'Projects'], ['/admin/users', 'Users'], ['/admin/flavors', 'Flavors and prices']]
      .map(([p, t]) => h('li', link(p, t, here === p))))) : null;
  const menu = h('button.menu-toggle', {type: 'button', 'aria-expanded': 'false', 'aria-controls': 'nav', onclick: e => {
    const open = e.currentTarget.getAttribute('aria-expanded') !== 'true';
    e.currentTarget.setAttribute('aria-expanded', String(open));
    document.getElementById('nav').classList.toggle('open', open);
  }}, 'Menu');
  return [
    h('a.skip', {href: '#main'}, 'Skip to content'),
    h('header.top',
      h('a.brand', {href: home()}, 'kumo'),
      menu,
      h('div.who', picker, h('span.user', {title: 'Logged in user'}, s.user),
        h('button', {type: 'button', id: 'logout', onclick: doLogout}, 'Log out'))),
    h('nav', {id: 'nav', 'aria-label': 'Main'}, h('ul', nav, admin)),
  ];
}

async function doLogout() {
  try { await api.logout(); } catch (e) { toast(e.message, 'error'); }
  state.session = null;
  state.project = '';
  navigate('/login', true);
}

async function loginPage() {
  const err = h('p.error', {role: 'alert'});
  const user = h('input', {name: 'username', id: 'login-user', autocomplete: 'username', required: true});
  const pass = h('input', {name: 'password', id: 'login-pass', type: 'password', autocomplete: 'current-password'});
  const tok = h('input', {name: 'token', id: 'login-token', type: 'password', autocomplete: 'off'});
  const form = h('form.login', {onsubmit: async e => {
    e.preventDefault();
    replace(err);
    const creds = tok.value ? {token: tok.value} : {username: user.value, password: pass.value};
    try {
      state.session = await api.login(creds);
      const next = new URLSearchParams(location.search).get('next');
      navigate(next && next.startsWith('/') && !next.startsWith('//') ? next : home(), true);
    } catch (x) {
      replace(err, x.message);
    }
  }},
  h('h1', 'Log in to kumo'),
  h('div.field', h('label', {htmlFor: 'login-user'}, 'User'), user),
  h('div.field', h('label', {htmlFor: 'login-pass'}, 'Password'), pass),
  h('details', h('summary', 'Use an API token instead'), h('div.field', h('label', {htmlFor: 'login-token'}, 'Token'), tok)),
  err,
  h('button.primary', {type: 'submit', id: 'login-submit'}, 'Log in'));
  tok.addEventListener('input', () => { user.required = !tok.value; });
  return h('div.login-page', form);
}

// Links inside the app navigate without a reload.
document.addEventListener('click', e => {
  const a = e.target.closest && e.target.closest('a[href]');
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/v1/') || url.hash) return;
  e.preventDefault();
  navigate(url.pathname + url.search);
});
setRender(render);
window.addEventListener('popstate', render);
window.addEventListener('kumo:unauthorized', () => {
  if (location.pathname !== '/login') { state.session = null; navigate('/login', true); }
});
render();
