// egress-proxy status page: reads /status and /denied every few seconds and fills the page in.
// Every value shown comes from a client or the network (host names, client addresses, error
// messages) and goes into the page as text (textContent, createElement), never as markup.
'use strict';

(function () {
  const REFRESH_MS = 5000;
  // Reasons an allowlist entry would cure: the entry to add is derived when /denied does not name it.
  const CURABLE = new Set(['host_not_allowlisted', 'port_not_allowed', 'ip_literal_not_allowed']);

  const $ = (id) => document.getElementById(id);

  function setText(id, text) {
    $(id).textContent = text == null ? '' : String(text);
  }

  function cell(row, text, className) {
    const td = document.createElement('td');
    td.textContent = text == null ? '' : String(text);
    if (className) {
      td.className = className;
    }
    row.appendChild(td);
    return td;
  }

  /** Replaces a table's rows; shows the "none" line instead when there are none. */
  function fill(tableId, emptyId, items, addCells) {
    const body = $(tableId).tBodies[0];
    const rows = items.map((item) => {
      const tr = document.createElement('tr');
      addCells(tr, item);
      return tr;
    });
    body.replaceChildren(...rows);
    $(tableId).hidden = items.length === 0;
    if (emptyId) {
      $(emptyId).hidden = items.length > 0;
    }
  }

  function duration(seconds) {
    let s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (d > 0) {
      return d + ' d ' + h + ' h';
    }
    if (h > 0) {
      return h + ' h ' + m + ' min';
    }
    return m > 0 ? m + ' min ' + s + ' s' : s + ' s';
  }

  /** A timestamp to the second, in UTC: "2026-12-06 01:18:15 UTC". */
  function when(iso) {
    const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/.exec(String(iso));
    return m ? m[1] + ' ' + m[2] + ' UTC' : String(iso);
  }

  /** "12 s ago", measured on the proxy's clock (now), with the timestamp as the cell's tooltip. */
  function ago(td, iso, now) {
    const t = Date.parse(iso);
    if (Number.isNaN(t)) {
      td.textContent = String(iso);
      return;
    }
    td.textContent = duration((now - t) / 1000) + ' ago';
    td.title = String(iso);
  }

  /** The allowlist entry that admits a refused destination, or null when none would. */
  function entryFor(d) {
    if (typeof d.entry === 'string' && d.entry) {
      return d.entry;
    }
    if (!CURABLE.has(d.reason) || typeof d.host !== 'string' || d.port == null) {
      return null;
    }
    if (/^[0-9.]+$/.test(d.host)) {
      return d.host + '/32:' + d.port;
    }
    if (d.host.includes(':')) {
      return '[' + d.host + ']/128:' + d.port;
    }
    return d.host + ':' + d.port;
  }

  function renderStatus(s, now) {
    setText('version', s.version);
    const health = $('health');
    health.textContent = s.ready ? 'ready' : 'not ready';
    health.className = 'badge ' + (s.ready ? 'ok' : 'bad');
    setText('uptime', duration(s.uptime_seconds));
    setText('started', 'since ' + when(s.started));
    const conn = s.connections || {};
    setText('connections', conn.active + (conn.limit ? ' of ' + conn.limit : ''));
    const tunnels = (s.tunnels || {}).active || 0;
    setText('tunnels', tunnels + (tunnels === 1 ? ' tunnel open' : ' tunnels open'));
    setText('transport', s.transport);

    const allowlist = s.allowlist || { presets: [], entries: [] };
    const policies = s.policies || [];
    // Each allowlist has its own mode: the top-level one and every policy's.
    const reporting = (allowlist.mode === 'report' ? ['the top-level allowlist'] : [])
      .concat(policies.filter((p) => p.mode === 'report')
        .map((p) => 'policy "' + p.name + '"'));
    $('report-mode').hidden = reporting.length === 0;
    setText('report-which', reporting.join(', '));
    setText('mode', allowlist.mode ? 'allowlist.mode = ' + allowlist.mode
      + (policies.length ? ' (top level; each policy has its own, below)' : '') : '');

    const cfg = s.config || {};
    setText('config-file', cfg.file || 'shipped defaults (no file)');
    const last = cfg.last_reload;
    const reloadError = $('reload-error');
    if (!last) {
      setText('reload', 'not reloaded since the start');
      reloadError.hidden = true;
    } else {
      const when = document.createElement('span');
      ago(when, last.at, now);
      const result = last.result === 'success' ? 'applied' : 'REFUSED, the previous configuration stays in force';
      setText('reload', 'last reload (' + last.trigger + ') ' + when.textContent + ': ' + result
        + (last.restart_needed && last.restart_needed.length
          ? '; needs a restart: ' + last.restart_needed.join(', ') : ''));
      $('reload').title = last.at;
      $('reload').className = last.result === 'success' ? 'muted' : 'error-text';
      reloadError.hidden = !last.error;
      reloadError.textContent = last.error || '';
    }

    const unreachable = s.unreachable || [];
    setText('unreachable-count', unreachable.length);
    fill('unreachable', 'unreachable-empty', unreachable, (tr, u) => {
      cell(tr, u.destination, 'mono');
      cell(tr, u.cause);
      cell(tr, u.count, 'num');
      ago(cell(tr, ''), u.first_seen, now);
      ago(cell(tr, ''), u.last_seen, now);
      cell(tr, u.last_client, 'mono');
    });

    // Destinations answered 504 at once because every address timed out recently.
    const ff = s.fast_fail || { enabled: false, hosts: [] };
    const fastFailing = ff.hosts || [];
    setText('fast-fail-count', fastFailing.length);
    setText('fast-fail-about', ff.enabled
      ? 'Destinations whose every address timed out recently: answered 504 at once, with one '
        + 'trial connection every ' + duration(ff.cool_down_seconds) + '.'
      : 'Off (upstream.fast-fail.enabled = false): every request waits for its connect timeout.');
    fill('fast-fail', 'fast-fail-empty', fastFailing, (tr, f) => {
      cell(tr, f.destination, 'mono');
      cell(tr, (f.addresses || []).join(', '), 'mono');
      cell(tr, duration(f.timed_out_seconds_ago) + ' ago');
      cell(tr, f.trial_running ? 'a trial connection is running'
        : (f.retry_in_seconds > 0 ? 'in ' + duration(f.retry_in_seconds) : 'by the next request'));
    });

    const entries = allowlist.entries || [];
    setText('allowlist-count', entries.length);
    setText('presets', allowlist.presets && allowlist.presets.length
      ? 'Presets: ' + allowlist.presets.join(', ') : 'No presets.');
    fill('allowlist', null, entries, (tr, e) => {
      cell(tr, e.entry, 'mono');
      cell(tr, e.source === 'preset' ? 'preset ' + e.preset : 'allowlist.hosts');
    });

    $('policies-part').hidden = policies.length === 0;
    fill('policies', null, policies, (tr, p) => {
      // A policy's mode, presets and entries are fields of the policy itself.
      const entries = p.entries || [];
      cell(tr, p.name, 'mono');
      cell(tr, [['clients', p.clients], ['users', p.users], ['identities', p.identities]]
        .filter(([, v]) => v && v.length).map(([k, v]) => k + ' ' + v.join(', ')).join('; '), 'mono');
      cell(tr, p.mode);
      cell(tr, (p.presets && p.presets.length ? 'presets ' + p.presets.join(', ') + '; ' : '')
        + entries.map((e) => e.entry).join(', '), 'mono');
    });
  }

  /**
   * The entries to add, one quoted HOCON string per line (a HOCON quoted string is a JSON string):
   * the top-level allowlist's first, then each policy's under a comment naming it.
   */
  function suggestions(refused) {
    const byPolicy = new Map();
    for (const d of refused) {
      const entry = entryFor(d);
      if (entry == null) {
        continue;
      }
      const policy = typeof d.policy === 'string' && d.policy ? d.policy : 'default';
      if (!byPolicy.has(policy)) {
        byPolicy.set(policy, new Set());
      }
      byPolicy.get(policy).add(entry);
    }
    const names = [...byPolicy.keys()]
      .sort((a, b) => (a === 'default' ? -1 : b === 'default' ? 1 : a.localeCompare(b)));
    const lines = [];
    for (const name of names) {
      if (name !== 'default') {
        lines.push('# policy ' + JSON.stringify(name) + ': into its allowlist.hosts in egress-proxy.policies');
      }
      lines.push(...[...byPolicy.get(name)].sort().map((e) => JSON.stringify(e)));
    }
    return lines;
  }

  function renderDenied(report, now) {
    const refused = (report.entries || []).filter((d) => d.type === 'denied');
    setText('denied-count', refused.length);
    fill('denied', 'denied-empty', refused, (tr, d) => {
      const wouldOnly = d.enforced === false;
      if (wouldOnly) {
        tr.className = 'would';
      }
      cell(tr, d.destination, 'mono');
      cell(tr, wouldOnly ? 'would be denied (report mode)' : 'denied');
      cell(tr, d.reason);
      cell(tr, d.policy || '');
      cell(tr, d.count, 'num');
      ago(cell(tr, ''), d.first_seen, now);
      ago(cell(tr, ''), d.last_seen, now);
      cell(tr, d.last_client, 'mono');
    });
    const lines = suggestions(refused);
    const text = lines.join('\n');
    const box = $('suggested');
    if (box.value !== text) {
      box.value = text;
      box.rows = Math.min(Math.max(lines.length, 1), 12);
    }
    $('copy').disabled = lines.length === 0;
  }

  async function getJson(path) {
    const res = await fetch(path, { cache: 'no-store', headers: { Accept: 'application/json' } });
    if (!res.ok) {
      throw new Error(path + ': HTTP ' + res.status + (res.status === 403
        ? ' (this address is not in egress-proxy.admin.clients.allow)' : ''));
    }
    return res.json();
  }

  async function refresh() {
    try {
      const [status, denied] = await Promise.all([getJson('/status'), getJson('/denied')]);
      const now = Date.parse(status.now) || Date.now();
      renderStatus(status, now);
      renderDenied(denied, now);
      $('error').hidden = true;
      setText('updated', 'updated ' + new Date().toLocaleTimeString());
      document.body.dataset.loaded = 'true';
    } catch (e) {
      const banner = $('error');
      banner.textContent = 'Could not refresh: ' + e.message + '. Showing the last data read.';
      banner.hidden = false;
      $('health').textContent = 'unreachable';
      $('health').className = 'badge bad';
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  async function copy() {
    const box = $('suggested');
    const result = $('copy-result');
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(box.value);
      } else {
        // Plain http from another machine is not a secure context: select and copy the old way.
        box.focus();
        box.select();
        if (!document.execCommand('copy')) {
          throw new Error('the browser refused');
        }
      }
      result.textContent = 'Copied.';
    } catch (e) {
      box.focus();
      box.select();
      result.textContent = 'Could not copy (' + e.message + '); the entries are selected: copy them by hand.';
    }
  }

  $('copy').addEventListener('click', copy);
  refresh();
}());
