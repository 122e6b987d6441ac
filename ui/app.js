// The seeds page: one card per seed (what it does, NEXT/ABORT buttons, a stepper of its runbook steps,
// progress, what state a failed seed left the host in; the full diagram and history behind a toggle),
// kept live from /api/seeds-stream. Plain browser JavaScript, no build step.
'use strict';
(() => {
  const bootEl = document.getElementById('boot');
  const boot = JSON.parse(bootEl.textContent);
  bootEl.remove();
  // The token stays in this closure only: out of the address bar, history and the DOM.
  const token = boot.token;
  if (location.search.includes('token=')) history.replaceState(null, '', location.pathname);
  document.getElementById('host').textContent = boot.hostname;
  document.getElementById('version').textContent = boot.version ? 'v' + boot.version : '';

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
  /** Times as in the logs: UTC, with the zone shown. */
  function clock(t) {
    const v = ms(t);
    return v === undefined ? '' : new Date(v).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
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

  // ---- what a seed does, in the words of its runbook
  const stepLabels = {
    stoppingMySQL: 'stop MySQL',
    purgingDatadir: 'purge the datadir',
    receiving: 'receive the copy',
    postCopy: 'run the post-copy command',
    startingMySQL: 'start MySQL',
    mountingSnapshot: 'mount the snapshot',
    sending: 'send the datadir',
    unmounting: 'unmount the snapshot',
    cleanup: 'clean up',
    checking: 'pre-seed checks',
    streaming: 'stream the copy',
    droppingSchemas: 'drop the schemas the dump replaces',
    loading: 'receive and load the dump',
    preparing: 'prepare the backup',
    fixingOwner: 'fix file owners',
    settingUpReplication: 'set up replication',
    catchingUp: 'catch up replication',
  };
  const label = (step) => stepLabels[step] || step;
  const runbook = (view) => (boot.runbooks && boot.runbooks[view.machine]) || [];
  const params = (view) => view.params || {};

  /** Steps the chart's guards will pass over for this seed's parameters. */
  function skippedByParams(view, step) {
    const p = params(view);
    if (view.role === 'target') {
      return (step === 'startingMySQL' && ((!p.startMySQL && !p.replicate) || p.receiveOnly)) || (step === 'postCopy' && p.receiveOnly) ||
        ((step === 'settingUpReplication' || step === 'catchingUp') && !p.replicate);
    }
    if (view.role === 'source') return (step === 'mountingSnapshot' || step === 'unmounting') && p.alreadyMounted;
    return false;
  }

  /** The step the seed failed or was aborted in (from the error, else the last step in its history). */
  function endedIn(view) {
    const steps = runbook(view);
    const named = view.error && view.error.step;
    if (named && steps.includes(named)) return named;
    const m = view.error && /during (\w+)/.exec(view.error.message || '');
    if (m && steps.includes(m[1])) return m[1];
    const errored = (view.history || []).filter((h) => h.error && steps.includes(h.state)).at(-1);
    if (errored) return errored.state;
    return (view.history || []).filter((h) => steps.includes(h.state)).map((h) => h.state).at(-1) || null;
  }

  /** Each runbook step with its status (done, current, paused, failed, aborted, skipped, pending) and time. */
  function stepperOf(view) {
    const history = view.history || [];
    const ended = view.status === 'failed' || view.status === 'aborted' ? endedIn(view) : null;
    const rows = runbook(view).map((step) => {
      const entries = history.filter((h) => h.state === step);
      const first = entries[0];
      const last = entries.at(-1);
      let status;
      if (view.state === step && view.status === 'active') status = view.paused ? 'paused' : 'current';
      else if (step === ended) status = view.status === 'aborted' ? 'aborted' : 'failed';
      else if (entries.length > 0) status = 'done';
      else if (view.status !== 'active' || skippedByParams(view, step)) status = 'skipped';
      else status = 'pending';
      let took = '';
      if (first) {
        const end = last && last.leftAt ? ms(last.leftAt) : view.status === 'active' ? Date.now() : ms(view.updatedAt);
        if (end !== undefined && ms(first.enteredAt) !== undefined) took = duration((end - ms(first.enteredAt)) / 1000);
      }
      if (status === 'paused') took = 'waits for NEXT';
      return { step, status, took };
    });
    const cleanup = history.filter((h) => h.state === 'cleanup').at(-1);
    if (cleanup) {
      const end = cleanup.leftAt ? ms(cleanup.leftAt) : Date.now();
      rows.push({ step: 'cleanup', status: view.state === 'cleanup' ? 'current' : cleanup.error ? 'failed' : 'done', took: duration((end - ms(cleanup.enteredAt)) / 1000) });
    }
    return rows;
  }

  const marked = (view, mark) => (view.marks || []).includes(mark);
  /** Whether MySQL was stopped by this seed's finished "stop MySQL" step. */
  const stoppedMySQL = (view) => (view.history || []).some((h) => h.state === 'stoppingMySQL' && h.leftAt && !h.error) && endedIn(view) !== 'stoppingMySQL';

  /** What ABORT will do now, said before the operator confirms. */
  function abortConsequences(view) {
    if (view.role === 'target' && view.method === 'dump') {
      const dropped = marked(view, 'schemasDropStarted') || (view.state === 'droppingSchemas' && !view.paused);
      return 'Cleanup kills this seed\'s processes and stops the receiver. MySQL keeps running. ' +
        (marked(view, 'dumpLoaded') ? 'The loaded schemas stay.'
          : dropped ? 'The schemas the dump replaces are dropped (a half-done load is no copy); the other schemas stay.'
            : 'No schema has been touched yet.');
    }
    if (view.role === 'target') {
      const purged = marked(view, 'purgeStarted') || (view.state === 'purgingDatadir' && !view.paused);
      const copied = marked(view, 'transferred') || marked(view, 'backupPrepared');
      return 'Cleanup kills this seed\'s processes and stops the receiver. ' +
        (copied ? 'The complete copy stays in the datadir; MySQL is not started.'
          : purged ? 'The datadir is emptied again (the partial copy is removed) and MySQL stays stopped: seed again or restore before starting MySQL.'
            : 'The datadir has not been touched yet; MySQL is left as it is now.');
    }
    if (view.method === 'backup' || view.method === 'dump') {
      return `Cleanup kills this seed's processes (the ${view.method} stream).` + ' MySQL on this host keeps running, untouched. The target seed fails once the stream is gone.';
    }
    return 'Cleanup kills this seed\'s processes (the sender) and unmounts the snapshot if this seed mounted it. ' +
      'MySQL on this host is not touched. The target seed fails once the sender is gone.';
  }

  /** After a failure or abort: the state the host is in, and what to do. */
  function aftermath(view) {
    if (view.status !== 'failed' && view.status !== 'aborted') return null;
    const message = (view.error && view.error.message) || '';
    if (/cleanup also failed/.test(message)) {
      return { state: 'Cleanup did not finish, so the host is in an unknown state.', todo: 'Check MySQL, the datadir and the snapshot mount by hand before seeding again.' };
    }
    if (view.role === 'source') {
      return { state: 'MySQL on this host was not touched' + (marked(view, 'mountedBySeed') ? ', and the snapshot this seed mounted was unmounted.' : '.'),
        todo: 'Fix the cause above and seed again; the target host needs a new seed too.' };
    }
    const step = endedIn(view);
    if (step === 'settingUpReplication' || step === 'catchingUp') {
      return { state: 'MySQL runs on the complete copy, but replication is not ' + (step === 'catchingUp' ? 'caught up.' : 'set up.'),
        todo: 'Look at the replica status (SHOW REPLICA STATUS), fix the cause, then set up replication by hand or seed again.' };
    }
    if (step === 'checking') {
      return { state: 'Nothing was changed on this host: the pre-seed checks failed before MySQL was stopped or anything deleted' +
        (view.method === 'dump' ? ' (MySQL runs, no schema was dropped).' : '.'),
        todo: 'Fix what the failed checks name (GET /api/seeds/:id lists every check) and seed again.' };
    }
    if (view.method === 'dump') {
      if (marked(view, 'dumpLoaded')) return { state: 'MySQL runs with the loaded schemas.', todo: 'Fix the cause above and seed again, or go on by hand.' };
      if (marked(view, 'schemasDropStarted')) {
        return { state: 'MySQL runs; the schemas the dump replaces were dropped (what a load left half done too); the other schemas, users and grants stay.', todo: 'Fix the cause above and seed again (or restore those schemas).' };
      }
      return { state: 'MySQL runs, untouched: no schema was dropped.', todo: 'Fix the cause above and seed again.' };
    }
    if (marked(view, 'backupPrepared')) {
      return { state: 'The datadir holds the complete, prepared copy, but MySQL was not started on it.', todo: 'Read the MySQL error log (GET /api/mysql-error-log-tail), fix the cause and start MySQL.' };
    }
    if (marked(view, 'transferred') && marked(view, 'postCopied')) {
      return { state: 'The datadir holds the complete copy and post-copy ran, but MySQL was not started.', todo: 'Read the MySQL error log (GET /api/mysql-error-log-tail), fix the cause and start MySQL.' };
    }
    if (marked(view, 'transferred')) {
      return { state: 'MySQL is stopped; the datadir holds the complete copy, but the post-copy command did not finish.', todo: 'Run the post-copy command by hand (or seed again), then start MySQL.' };
    }
    if (marked(view, 'purgeStarted')) {
      return { state: 'MySQL is stopped and the datadir is empty (a partial copy was removed).', todo: 'Seed again, or restore the datadir before starting MySQL.' };
    }
    if (stoppedMySQL(view)) {
      return { state: 'MySQL is stopped (this seed stopped it); the datadir was not touched.', todo: 'Start MySQL if this host should serve again (POST /api/mysql-start), or seed again.' };
    }
    return { state: 'The datadir was not touched; MySQL may be stopped or still running.', todo: 'Check MySQL (GET /api/mysql-status), start it if it should run, fix the cause and seed again.' };
  }

  /** Peer, method, snapshot, MySQL afterwards, times and total duration. */
  function factsOf(view) {
    const p = params(view);
    const facts = [];
    if (view.role === 'source') {
      facts.push(['peer', `target ${p.targetHost}:${p.targetPort}`]);
      if (view.method === 'backup') facts.push(['snapshot', 'none: a hot backup of the running MySQL']);
      else if (view.method === 'dump') facts.push(['snapshot', 'none: a logical dump of the running MySQL']);
      else facts.push(['snapshot', p.alreadyMounted ? `already mounted by orchestrator${p.sourceDir ? ' (' + p.sourceDir + ')' : ''}` : p.snapshot || '?']);
    } else {
      facts.push(['peer', view.transfer && view.transfer.port ? `the source sends to port ${view.transfer.port}` : 'the source connects to this host']);
    }
    if (view.method) facts.push(['method', view.method]);
    if (view.transport) facts.push(['transport', view.transport]);
    if (view.role === 'target') {
      facts.push(['MySQL afterwards', p.receiveOnly ? 'left to orchestrator (original route: it stops, purges, runs post-copy, starts)'
        : view.method === 'dump' ? (p.replicate ? 'keeps running with the loaded dump, then set up to replicate from the source until caught up' : 'keeps running with the loaded dump')
        : p.replicate ? 'started, then set up to replicate from the source until caught up'
          : p.startMySQL ? (view.method === 'backup' ? 'started on the prepared copy' : 'started after the post-copy command') : 'left stopped (startMySQL was not asked)']);
    } else {
      facts.push(['MySQL', 'not touched on this host']);
    }
    if (p.stepByStep) facts.push(['mode', 'step by step: each step waits for NEXT']);
    facts.push(['started', clock(view.createdAt)]);
    const end = view.status === 'active' ? Date.now() : ms(view.updatedAt);
    if (view.status !== 'active') facts.push(['ended', clock(view.updatedAt)]);
    if (ms(view.createdAt) !== undefined && end !== undefined) facts.push([view.status === 'active' ? 'running for' : 'took', duration((end - ms(view.createdAt)) / 1000)]);
    return facts;
  }

  // ---- NEXT and ABORT: POST /api/seeds/:id/events with the token in a header, as the API requires
  const canPost = boot.tokenVia !== 'query';
  async function sendEvent(card, id, type) {
    const result = card.querySelector('.action-result');
    result.textContent = '';
    card.querySelectorAll('button.next, button.abort').forEach((b) => (b.disabled = true));
    try {
      const res = await api('/api/seeds/' + encodeURIComponent(id) + '/events', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ type }),
      });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        const hint = body.Details && body.Details.hint ? ` (${body.Details.hint})` : '';
        result.textContent = `${type} refused: HTTP ${res.status} ${body.Message || ''}${hint}`;
        result.dataset.kind = 'error';
      } else {
        // The card is drawn from the live feed only: this answer holds the view as of the event, and it may
        // arrive after the feed's newer changes (ABORT's cleanup can end first), which it would draw over.
        result.textContent = `${type} sent`;
        result.dataset.kind = 'ok';
      }
    } catch (err) {
      result.textContent = `${type} failed: ${err.message}`;
      result.dataset.kind = 'error';
    } finally {
      const view = views.get(id);
      if (view) renderActions(card, view);
    }
  }

  function renderActions(card, view) {
    const accepts = view.accepts || [];
    const actions = card.querySelector('.actions');
    actions.hidden = accepts.length === 0;
    const next = actions.querySelector('button.next');
    next.hidden = !accepts.includes('NEXT');
    next.textContent = view.paused ? `NEXT: ${label(view.state)}` : 'NEXT';
    const abort = actions.querySelector('button.abort');
    abort.hidden = !accepts.includes('ABORT');
    for (const b of [next, abort]) {
      b.disabled = !canPost;
      b.title = canPost ? '' : 'with basic auth on, set TokenHttpHeader so the page can send the token on POST';
    }
    const confirm = actions.querySelector('.confirm');
    if (!accepts.includes('ABORT')) confirm.hidden = true;
    confirm.querySelector('.consequences').textContent = abortConsequences(view);
  }

  // ---- cards
  const cards = new Map();
  const views = new Map();
  const seedsEl = document.getElementById('seeds');

  function makeCard(view) {
    const card = el('article', { class: 'seed', 'data-seed-id': view.id },
      el('h2', {}, el('span', { class: 'id' }), el('span', { class: 'badge' }), el('span', { class: 'role' })),
      el('div', { class: 'waiting', hidden: '' }),
      el('div', { class: 'peer-wait', hidden: '' }),
      el('ul', { class: 'warnings', hidden: '' }),
      el('dl', { class: 'facts' }),
      el('div', { class: 'actions', hidden: '' },
        el('button', { type: 'button', class: 'next' }),
        el('button', { type: 'button', class: 'abort', text: 'ABORT' }),
        el('div', { class: 'confirm', hidden: '', role: 'alertdialog' },
          el('strong', { text: 'Abort this seed?' }), ' ', el('span', { class: 'consequences' }), ' ',
          el('button', { type: 'button', class: 'confirm-abort', text: 'Abort the seed' }),
          el('button', { type: 'button', class: 'cancel-abort', text: 'Keep it running' })),
        el('span', { class: 'action-result' })),
      el('div', { class: 'error', hidden: '' }),
      el('div', { class: 'aftermath', hidden: '' }),
      el('div', { class: 'progress', hidden: '' }, el('div', { class: 'bar', role: 'progressbar', 'aria-valuemin': '0', 'aria-valuemax': '100' }, el('div')), el('div', { class: 'numbers' })),
      el('ol', { class: 'stepper' }),
      el('div', { class: 'meta' }),
      el('details', { class: 'detail' }, el('summary', { text: 'full state diagram and history' }),
        el('div', { class: 'layout' },
          el('div', { class: 'diagram' }, el('div', { class: 'missing', text: 'loading diagram…' })),
          el('table', { class: 'history' },
            el('thead', {}, el('tr', {}, el('th', { text: 'step' }), el('th', { text: 'entered' }), el('th', { text: 'took' }), el('th', { text: 'error' }))),
            el('tbody')))));
    card.querySelector('button.next').addEventListener('click', () => sendEvent(card, view.id, 'NEXT'));
    card.querySelector('button.abort').addEventListener('click', () => {
      card.querySelector('.confirm').hidden = false;
    });
    card.querySelector('button.cancel-abort').addEventListener('click', () => {
      card.querySelector('.confirm').hidden = true;
    });
    card.querySelector('button.confirm-abort').addEventListener('click', () => {
      card.querySelector('.confirm').hidden = true;
      sendEvent(card, view.id, 'ABORT');
    });
    // Seeds without a runbook stepper show the diagram at once; the others keep it behind the toggle.
    card.querySelector('details').open = runbook(view).length === 0 && (view.status === 'active' || view.status === 'failed');
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
    badge.textContent = view.status === 'active' && view.paused ? 'paused' : view.status;
    badge.dataset.status = view.status;
    badge.dataset.paused = view.paused ? 'true' : 'false';
    card.querySelector('.role').textContent = `${view.role} · ${view.machine}`;
    const waiting = card.querySelector('.waiting');
    waiting.hidden = !(view.status === 'active' && view.paused);
    waiting.textContent = waiting.hidden ? '' : `Paused before "${label(view.state)}": waits for NEXT (or ABORT).`;
    // Waiting for the other side, and what the seed met without failing (refused senders...).
    const peerWait = card.querySelector('.peer-wait');
    const entered = (view.history || []).filter((h) => h.state === view.state).at(-1);
    let waitText = '';
    if (view.status === 'active' && view.waiting) {
      waitText = `Waiting for the ${view.waiting.for} since ${clock(view.waiting.since)} (gives up at ${clock(view.waiting.until)}): ${view.waiting.message}`;
    } else if (view.status === 'active' && !view.paused && (view.state === 'receiving' || view.state === 'sending') && !(view.progress && view.progress.bytesDone > 0) && entered) {
      waitText = `Waiting for the ${view.state === 'receiving' ? 'sender' : 'receiver'} since ${clock(entered.enteredAt)}`;
    }
    const warnings = view.warnings || [];
    if (waitText && warnings.length > 0) waitText += ` · ${warnings.length} warning${warnings.length > 1 ? 's' : ''}, last: ${warnings.at(-1).message}`;
    peerWait.hidden = waitText === '';
    peerWait.textContent = waitText;
    const warningsEl = card.querySelector('.warnings');
    warningsEl.hidden = warnings.length === 0;
    warningsEl.replaceChildren(...warnings.slice(-5).map((w) => el('li', { text: `${clock(w.at)} ${w.message}` })));
    card.querySelector('.facts').replaceChildren(...factsOf(view).flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { 'data-fact': k, text: v })]));
    renderActions(card, view);
    card.querySelector('.stepper').replaceChildren(...stepperOf(view).map((r) =>
      el('li', { 'data-step': r.step, 'data-step-status': r.status }, el('span', { class: 'step-label', text: label(r.step) }), el('span', { class: 'step-status', text: r.status }), el('span', { class: 'took', text: r.took }))));
    const after = aftermath(view);
    const afterEl = card.querySelector('.aftermath');
    afterEl.hidden = !after;
    if (after) afterEl.replaceChildren(el('strong', { text: 'State of this host: ' }), after.state, el('div', { class: 'todo', text: 'What to do: ' + after.todo }));
    const meta = card.querySelector('.meta');
    // The machine's own state name and last change, for those who read the diagram; the facts say the rest.
    meta.replaceChildren('machine state ', el('span', { class: 'state-name', text: view.state }), ` · last change ${clock(view.updatedAt)}`);

    const errorEl = card.querySelector('.error');
    if (view.error) {
      errorEl.hidden = false;
      errorEl.replaceChildren(el('strong', { text: (view.error.code ? view.error.code + ': ' : '') }), view.error.message,
        ...(view.error.hint ? [el('div', { class: 'hint', text: 'what to do: ' + view.error.hint })] : []));
    } else {
      errorEl.hidden = true;
    }

    const progressEl = card.querySelector('.progress');
    const p = view.progress;
    if (p) {
      progressEl.hidden = false;
      const pct = p.bytesTotal ? Math.min(100, (100 * p.bytesDone) / p.bytesTotal) : view.status === 'done' ? 100 : null;
      const bar = progressEl.querySelector('.bar');
      bar.firstChild.style.width = (pct ?? 0) + '%';
      bar.setAttribute('aria-valuenow', pct === null ? '' : pct.toFixed(1));
      const parts = [`${bytes(p.bytesDone)}${p.bytesTotal ? ' of ' + bytes(p.bytesTotal) : ''}${pct !== null ? ` (${pct.toFixed(pct < 10 ? 1 : 0)}%)` : ''}`];
      if (p.rateBytesPerSec && view.status === 'active') parts.push(bytes(p.rateBytesPerSec) + '/s');
      if (p.etaSeconds !== null && p.etaSeconds !== undefined && view.status === 'active') parts.push('ETA ' + duration(p.etaSeconds));
      if (p.filesTotal) parts.push(`files ${p.filesDone ?? 0}/${p.filesTotal}`);
      // The sending side of a compressed copy: what this session's data cost on the wire.
      if (p.wire && p.wire.wireBytes > 0) parts.push(`${bytes(p.wire.wireBytes)} on the wire (${(p.wire.dataBytes / p.wire.wireBytes).toFixed(1)}x smaller, ${p.wire.compression})`);
      if (p.currentFile && view.status === 'active') parts.push('current ' + p.currentFile);
      progressEl.querySelector('.numbers').textContent = parts.join(' · ');
    } else {
      progressEl.hidden = true;
    }

    const rows = (view.history || []).map((h) => {
      const took = ms(h.leftAt) !== undefined && ms(h.enteredAt) !== undefined ? duration((ms(h.leftAt) - ms(h.enteredAt)) / 1000) : !h.leftAt && view.status === 'active' ? 'now' : '';
      const resumed = (h.resumedAt || []).length ? ` (resumed after an agent restart at ${h.resumedAt.map(clock).join(', ')})` : '';
      return el('tr', { 'data-state': h.state }, el('td', { text: h.state + resumed }), el('td', { text: clock(h.enteredAt) }), el('td', { text: took }),
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
