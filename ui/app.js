// The seeds page: one card per seed (diagram with the current state highlighted, progress, history,
// error), kept live from /api/seeds-stream. Plain browser JavaScript, no build step.
'use strict';
(() => {
  const bootEl = document.getElementById('boot');
  const boot = JSON.parse(bootEl.textContent);
  bootEl.remove();
  // The token stays in this closure only: out of the address bar, history and the DOM.
  const token = boot.token;
  if (location.search.includes('token=')) history.replaceState(null, '', location.pathname);
  document.getElementById('host').textContent = boot.hostname;

  function withToken(url) {
    if (boot.tokenVia !== 'query') return url;
    return url + (url.includes('?') ? '&' : '?') + 'token=' + encodeURIComponent(token);
  }
  function tokenHeaders() {
    if (boot.tokenVia === 'header') return { [boot.tokenHeader]: token };
    if (boot.tokenVia === 'bearer') return { Authorization: 'Bearer ' + token };
    return {};
  }
  function api(url, init = {}) {
    return fetch(withToken(url), { ...init, cache: 'no-store', headers: { ...tokenHeaders(), ...(init.headers || {}) } });
  }

  // ---- formatting
  function bytes(n) {
    if (n === null || n === undefined || !Number.isFinite(n)) return '?';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n.toFixed(0) : n.toFixed(1)) + ' ' + units[i];
  }
  function duration(seconds) {
    if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '?';
    seconds = Math.max(0, Math.round(seconds));
    const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    return h > 0 ? `${h}h ${m}m` : m > 0 ? `${m}m ${s}s` : `${s}s`;
  }
  function ms(t) {
    if (t === null || t === undefined) return undefined;
    const v = typeof t === 'number' ? t : Date.parse(t);
    return Number.isFinite(v) ? v : undefined;
  }
  function clock(t) {
    const v = ms(t);
    return v === undefined ? '' : new Date(v).toLocaleString();
  }
  function errorText(e) {
    if (!e) return '';
    if (typeof e === 'string') return e;
    return (e.code ? e.code + ': ' : '') + e.message + (e.hint ? ' (' + e.hint + ')' : '');
  }
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'text') node.textContent = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  // ---- diagrams: fetched once per machine, cloned into each card
  const diagrams = new Map();
  function diagramFor(machine) {
    if (!diagrams.has(machine)) {
      diagrams.set(machine, api('/ui/diagrams/' + encodeURIComponent(machine) + '.svg').then(async (res) => {
        if (!res.ok) return null;
        const doc = new DOMParser().parseFromString(await res.text(), 'image/svg+xml');
        return doc.documentElement.nodeName === 'svg' ? doc.documentElement : null;
      }).catch(() => null));
    }
    return diagrams.get(machine);
  }
  /** "postCopy.running" -> ["postCopy", "postCopy.running"]: the state and its ancestors. */
  function prefixes(path) {
    const parts = String(path).split('.');
    return parts.map((_, i) => parts.slice(0, i + 1).join('.'));
  }
  function highlight(card, view) {
    const svg = card.querySelector('.diagram svg');
    if (!svg) return;
    const byPath = (p) => svg.querySelector(`[id="${CSS.escape('state:' + p)}"]`);
    svg.querySelectorAll('.current, .current-parent, .visited, .failed-here').forEach((n) => n.classList.remove('current', 'current-parent', 'visited', 'failed-here'));
    for (const h of view.history || []) {
      for (const p of prefixes(h.state)) byPath(p)?.classList.add('visited');
      if (h.error) byPath(h.state)?.classList.add('failed-here');
    }
    const chain = prefixes(view.state);
    chain.forEach((p, i) => byPath(p)?.classList.add(i === chain.length - 1 ? 'current' : 'current-parent'));
    const current = byPath(view.state);
    if (current && current.classList.contains('cluster')) current.classList.add('current-parent');
  }

  // ---- cards
  const cards = new Map();
  const views = new Map();
  const seedsEl = document.getElementById('seeds');

  function makeCard(view) {
    const card = el('article', { class: 'seed', 'data-seed-id': view.id },
      el('h2', {}, el('span', { class: 'id' }), el('span', { class: 'badge' }), el('span', { class: 'role' })),
      el('div', { class: 'meta' }),
      el('div', { class: 'error', hidden: '' }),
      el('ul', { class: 'warnings', hidden: '' }),
      el('div', { class: 'progress', hidden: '' }, el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' }, el('div')), el('div', { class: 'numbers' })),
      el('details', { class: 'detail' }, el('summary', { text: 'diagram and steps' }),
        el('div', { class: 'layout' },
          el('div', { class: 'diagram' }, el('div', { class: 'missing', text: 'loading diagram…' })),
          el('table', { class: 'history' },
            el('thead', {}, el('tr', {}, el('th', { text: 'step' }), el('th', { text: 'entered' }), el('th', { text: 'took' }), el('th', { text: 'error' }))),
            el('tbody')))));
    // Open for seeds that are running or failed when the page first sees them; finished ones stay folded.
    card.querySelector('details').open = view.status === 'active' || view.status === 'failed';
    diagramFor(view.machine).then((svg) => {
      const holder = card.querySelector('.diagram');
      holder.replaceChildren(svg ? document.importNode(svg, true) : el('div', { class: 'missing', text: `no diagram for machine ${view.machine}` }));
      highlight(card, views.get(view.id) || view);
    });
    return card;
  }

  function render(view) {
    views.set(view.id, view);
    let card = cards.get(view.id);
    if (!card) {
      card = makeCard(view);
      cards.set(view.id, card);
    }
    card.dataset.status = view.status;
    card.dataset.state = view.state;
    card.querySelector('.id').textContent = view.id;
    const badge = card.querySelector('.badge');
    badge.textContent = view.status;
    badge.dataset.status = view.status;
    card.querySelector('.role').textContent = `${view.role} · ${view.machine}`;
    const meta = card.querySelector('.meta');
    meta.replaceChildren('state ', el('span', { class: 'state-name', text: view.state }),
      ` · started ${clock(view.createdAt)} · updated ${clock(view.updatedAt)}` + (view.transfer && view.transfer.port ? ` · transfer port ${view.transfer.port}` : ''));

    const errorEl = card.querySelector('.error');
    if (view.error) {
      errorEl.hidden = false;
      errorEl.replaceChildren(el('strong', { text: (view.error.code ? view.error.code + ': ' : '') }), view.error.message,
        ...(view.error.hint ? [el('div', { class: 'hint', text: 'what to do: ' + view.error.hint })] : []));
    } else {
      errorEl.hidden = true;
    }

    // What the seed met without failing: refused senders, a source that changed while being sent.
    const warningsEl = card.querySelector('.warnings');
    const warnings = view.warnings || [];
    warningsEl.hidden = warnings.length === 0;
    warningsEl.replaceChildren(...warnings.map((w) => el('li', { text: `${clock(w.at)} ${w.message}` })));

    const progressEl = card.querySelector('.progress');
    const p = view.progress;
    if (p) {
      progressEl.hidden = false;
      const pct = p.bytesTotal ? Math.min(100, (100 * p.bytesDone) / p.bytesTotal) : view.status === 'done' ? 100 : null;
      const bar = progressEl.querySelector('.bar');
      bar.firstChild.style.width = (pct ?? 0) + '%';
      bar.setAttribute('aria-valuenow', pct === null ? '' : pct.toFixed(1));
      const parts = [`${bytes(p.bytesDone)}${p.bytesTotal ? ' of ' + bytes(p.bytesTotal) : ''}${pct !== null ? ` (${pct.toFixed(pct < 10 ? 1 : 0)}%)` : ''}`];
      if (p.rateBytesPerSec) parts.push(bytes(p.rateBytesPerSec) + '/s');
      if (p.etaSeconds !== null && p.etaSeconds !== undefined && view.status === 'active') parts.push('ETA ' + duration(p.etaSeconds));
      if (p.filesTotal) parts.push(`files ${p.filesDone ?? 0}/${p.filesTotal}`);
      if (p.currentFile && view.status === 'active') parts.push('current ' + p.currentFile);
      progressEl.querySelector('.numbers').textContent = parts.join(' · ');
    } else {
      progressEl.hidden = true;
    }

    const rows = (view.history || []).map((h) => {
      const took = ms(h.leftAt) !== undefined && ms(h.enteredAt) !== undefined ? duration((ms(h.leftAt) - ms(h.enteredAt)) / 1000) : !h.leftAt && view.status === 'active' ? 'now' : '';
      return el('tr', { 'data-state': h.state }, el('td', { text: h.state }), el('td', { text: clock(h.enteredAt) }), el('td', { text: took }),
        el('td', { class: h.error ? 'err' : '', text: errorText(h.error) }));
    });
    card.querySelector('table.history tbody').replaceChildren(...rows);
    highlight(card, view);
    place();
  }

  /** Active seeds first, then newest first. */
  function place() {
    const order = [...views.values()].sort((a, b) =>
      (a.status === 'active' ? 0 : 1) - (b.status === 'active' ? 0 : 1) || (ms(b.createdAt) ?? 0) - (ms(a.createdAt) ?? 0) || a.id.localeCompare(b.id));
    order.forEach((v, i) => {
      const card = cards.get(v.id);
      if (seedsEl.children[i] !== card) seedsEl.insertBefore(card, seedsEl.children[i] || null);
    });
    document.getElementById('empty').hidden = views.size > 0;
  }

  function snapshot(seeds) {
    const ids = new Set(seeds.map((s) => s.id));
    for (const [id, card] of cards) if (!ids.has(id)) { card.remove(); cards.delete(id); views.delete(id); }
    seeds.forEach(render);
    place();
  }

  // ---- live stream: Server-Sent Events read with fetch, so the token travels in a header
  const connection = document.getElementById('connection');
  function setConnection(state, text) {
    connection.dataset.state = state;
    connection.textContent = text;
  }
  let retryMs = 2000;
  function handle(block) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':') || line === '') continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      const value = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'retry' && /^\d+$/.test(value)) retryMs = Number(value);
    }
    if (data.length === 0) return;
    const payload = JSON.parse(data.join('\n'));
    if (event === 'snapshot') snapshot(payload.seeds);
    else if (event === 'seed') render(payload);
  }
  async function stream() {
    for (;;) {
      try {
        const res = await api('/api/seeds-stream', { headers: { Accept: 'text/event-stream' } });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        setConnection('live', 'live');
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value.replace(/\r\n?/g, '\n');
          let end;
          while ((end = buffer.indexOf('\n\n')) >= 0) {
            handle(buffer.slice(0, end));
            buffer = buffer.slice(end + 2);
          }
        }
        setConnection('reconnecting', 'connection closed, reconnecting…');
      } catch (err) {
        setConnection('reconnecting', `disconnected (${err.message}), reconnecting…`);
      }
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }

  // ---- registration with orchestrator, when this agent runs it
  const registrationEl = document.getElementById('registration');
  async function registration() {
    try {
      const res = await api('/api/registration');
      if (res.ok) {
        const r = await res.json();
        const last = ms(r.lastContactAt);
        registrationEl.textContent = `orchestrator ${r.orchestrator || ''}: ${r.registered ? 'registered' : 'not registered'}` +
          (last !== undefined ? `, last contact ${duration((Date.now() - last) / 1000)} ago` : ', never reached') +
          (!r.registered && r.lastError ? ` (${r.lastError})` : '');
      } else {
        registrationEl.textContent = '';
      }
    } catch {
      registrationEl.textContent = '';
    }
  }

  stream();
  registration();
  setInterval(registration, 10000);
})();
