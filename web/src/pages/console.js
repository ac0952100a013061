// The console page, loaded only when opened: a terminal (xterm.js) on the
// instance's shell or serial console, or its display (noVNC) - all over
// the console WebSocket, authenticated by the session cookie.
import {Terminal} from '@xterm/xterm';
import {FitAddon} from '@xterm/addon-fit';
import RFB from '@novnc/novnc';
import {h, replace} from '../dom.js';
import {P, navigate, onLeave} from '../app.js';

function wsURL(project, name, kind) {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return proto + '//' + location.host + '/v1/projects/' + encodeURIComponent(project) + '/instances/' + encodeURIComponent(name) + '/console?kind=' + kind;
}

// mirrorStyles keeps xterm.js's generated rules (which it writes into
// <style> elements, which the page's CSP refuses) in constructed
// stylesheets, which scripts of the page's own origin may make.
function mirrorStyles(root) {
  const sheets = new Map();
  const sync = () => {
    for (const el of root.querySelectorAll('style')) {
      let sh = sheets.get(el);
      if (!sh) {
        sh = new CSSStyleSheet();
        sheets.set(el, sh);
        document.adoptedStyleSheets = [...document.adoptedStyleSheets, sh];
      }
      sh.replaceSync(el.textContent);
    }
  };
  const mo = new MutationObserver(sync);
  mo.observe(root, {subtree: true, childList: true, characterData: true});
  sync();
  return () => {
    mo.disconnect();
    const mine = new Set(sheets.values());
    document.adoptedStyleSheets = document.adoptedStyleSheets.filter(s => !mine.has(s));
  };
}

function terminal(box, status, project, name, kind) {
  const term = new Terminal({cursorBlink: true, convertEol: false, fontSize: 14, scrollback: 5000});
  const fit = new FitAddon();
  term.loadAddon(fit);
  const unmirror = mirrorStyles(box);
  term.open(box);
  fit.fit();
  term.write('\x1b[2mkumo: ' + kind + ' of ' + name + '\x1b[0m\r\n');
  // Tests and assistive tools read the screen through this.
  window.kumoTerminal = term;
  const ws = new WebSocket(wsURL(project, name, kind));
  ws.binaryType = 'arraybuffer';
  const enc = new TextEncoder();
  const resize = () => { if (ws.readyState === 1) ws.send(JSON.stringify({type: 'resize', cols: term.cols, rows: term.rows})); };
  ws.onopen = () => { status.textContent = 'Connected (' + kind + ')'; box.dataset.state = 'open'; resize(); term.focus(); };
  ws.onmessage = e => {
    if (typeof e.data === 'string') {
      try {
        const m = JSON.parse(e.data);
        if (m.type === 'exit') status.textContent = 'The session ended (exit code ' + m.code + ')';
      } catch { /* not a control message */ }
      return;
    }
    term.write(new Uint8Array(e.data));
  };
  ws.onclose = e => { box.dataset.state = 'closed'; if (!/ended/.test(status.textContent)) status.textContent = 'Disconnected' + (e.reason ? ': ' + e.reason : ''); };
  term.onData(d => { if (ws.readyState === 1) ws.send(enc.encode(d)); });
  term.onResize(resize);
  // Refit whenever the box changes size (layout settling, the window, a
  // phone turned); term.onResize tells the server.
  const ro = new ResizeObserver(() => { try { fit.fit(); } catch { /* disposed */ } });
  ro.observe(box);
  return () => { ro.disconnect(); ws.close(); term.dispose(); unmirror(); };
}

function display(box, status, project, name) {
  const rfb = new RFB(box, wsURL(project, name, 'vnc'), {wsProtocols: ['binary']});
  rfb.scaleViewport = true;
  rfb.addEventListener('connect', () => { status.textContent = 'Connected (display)'; box.dataset.state = 'open'; });
  rfb.addEventListener('disconnect', e => { box.dataset.state = 'closed'; status.textContent = e.detail.clean ? 'Disconnected' : 'The display connection failed'; });
  return () => rfb.disconnect();
}

export async function consolePage({project, name}) {
  const kind = new URLSearchParams(location.search).get('kind') || 'shell';
  const status = h('p', {id: 'console-status', role: 'status'}, 'Connecting…');
  const box = h('div.console', {id: 'console', dataset: {kind}, 'aria-label': 'Console of ' + name});
  const here = P(project) + '/instances/' + encodeURIComponent(name) + '/console';
  const tabs = h('div.tabs', {role: 'tablist', 'aria-label': 'Console kind'}, [['shell', 'Shell'], ['serial', 'Serial console'], ['vnc', 'Display']].map(([k, t]) =>
    h('button', {type: 'button', role: 'tab', 'aria-selected': String(k === kind), onclick: () => navigate(here + '?kind=' + k)}, t)));
  const page = h('div', h('div.page-head', h('h1', 'Console: ' + name), h('a', {href: P(project) + '/instances/' + encodeURIComponent(name)}, 'Back to the instance')), tabs, status, box);
  // The box must be in the page before the terminal measures it.
  requestAnimationFrame(() => {
    try {
      onLeave(kind === 'vnc' ? display(box, status, project, name) : terminal(box, status, project, name, kind));
    } catch (e) { replace(status, 'Cannot open the console: ' + e.message); }
  });
  return page;
}
