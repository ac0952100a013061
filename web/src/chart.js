// Small SVG charts (bars by day or by instance, a live line). Labels are
// text nodes; values are numbers.
import {h, svg} from './dom.js';

export function barChart(title, pairs, fmt = v => String(v)) {
  const W = 640, H = 220, pad = 30;
  const max = Math.max(1e-9, ...pairs.map(p => p[1]));
  const bw = pairs.length ? (W - pad * 2) / pairs.length : 0;
  const g = svg('svg', {viewBox: `0 0 ${W} ${H + 40}`, role: 'img', 'aria-label': title, class: 'chart'});
  g.appendChild(svg('title', {}, title));
  g.appendChild(svg('line', {x1: pad, y1: H, x2: W - pad, y2: H, class: 'axis'}));
  pairs.forEach(([label, v], i) => {
    const bh = (H - 20) * v / max;
    const x = pad + i * bw;
    const rect = svg('rect', {x: x + bw * 0.1, y: H - bh, width: Math.max(1, bw * 0.8), height: bh, class: 'bar-rect'});
    rect.appendChild(svg('title', {}, label + ': ' + fmt(v)));
    g.appendChild(rect);
    if (pairs.length <= 16 || i % Math.ceil(pairs.length / 16) === 0) {
      g.appendChild(svg('text', {x: x + bw / 2, y: H + 14, 'text-anchor': 'middle', class: 'tick'}, label.length > 10 ? label.slice(-10) : label));
    }
  });
  g.appendChild(svg('text', {x: pad, y: 12, class: 'tick'}, 'max ' + fmt(max)));
  return h('figure.chart', g, h('figcaption', title));
}

// lineChart draws points [t, v]; update(points) redraws.
export function lineChart(title, unit) {
  const W = 640, H = 160, pad = 30;
  const g = svg('svg', {viewBox: `0 0 ${W} ${H + 20}`, role: 'img', 'aria-label': title, class: 'chart'});
  const path = svg('polyline', {class: 'line', points: ''});
  const label = svg('text', {x: pad, y: 12, class: 'tick'}, '');
  g.append(svg('title', {}, title), svg('line', {x1: pad, y1: H, x2: W - pad, y2: H, class: 'axis'}), path, label);
  const fig = h('figure.chart', g, h('figcaption', title));
  fig.update = points => {
    if (points.length < 2) return;
    const t0 = points[0][0], t1 = points[points.length - 1][0] || t0 + 1;
    const max = Math.max(1e-9, ...points.map(p => p[1]));
    path.setAttribute('points', points.map(([t, v]) => {
      const x = pad + (W - 2 * pad) * (t - t0) / Math.max(1, t1 - t0);
      return x.toFixed(1) + ',' + (H - (H - 20) * v / max).toFixed(1);
    }).join(' '));
    label.textContent = 'now ' + points[points.length - 1][1].toFixed(1) + ' ' + unit + ', max ' + max.toFixed(1);
  };
  return fig;
}
