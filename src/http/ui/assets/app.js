// mcp-chat web page: a client of the public APIs only.
//
//   GET  /v1/models              the model picker
//   GET  /v1/mcp/servers         the tools panel (each MCP server's state and tools)
//   POST /chat/stream            a turn, as SSE events: start, delta, tool_call, tool_progress, tool_result,
//                                approval_required, elicitation, done, error
//   POST /v1/chat/completions    a turn whose tool calls wait for approval (type "mcp" tools
//                                with require_approval), and the Approve / Deny answers
//   GET / DELETE /sessions/{id}  the sidebar (the ids are kept in localStorage)
//
// Safety: nothing here parses HTML. Text from the model, a tool or the store becomes DOM text
// nodes (textContent / append of strings); the Markdown renderer builds elements itself, and
// links keep only http(s) targets. The page's Content-Security-Policy forbids any other origin.
'use strict';

(() => {
  const KEY_STORE = 'mcp-chat.key'; // sessionStorage: the API key, this tab only
  const SESSIONS_STORE = 'mcp-chat.sessions'; // localStorage: [{id, title}]
  const CURRENT_STORE = 'mcp-chat.current'; // localStorage: the open session
  const MODEL_STORE = 'mcp-chat.model';

  const $ = (id) => document.getElementById(id);

  /** An element with attributes and children (strings become text nodes). */
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children) if (c !== undefined && c !== null) e.append(c);
    return e;
  }

  // ------------------------------------------------------------------ Markdown, safely

  const INLINE = /(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)|\[([^\]\n]+)\]\(([^()\s]+)\)|\*\*(?=\S)([\s\S]+?)\*\*|(?<!\w)__(?=\S)([\s\S]+?)__(?!\w)|\*(?=[^\s*])([^*\n]+?)\*|(?<!\w)_(?=[^\s_])([^_\n]+?)_(?!\w)/g;

  /** Inline Markdown (code, links, bold, italic) as nodes; everything else is text. */
  function inline(text) {
    const out = [];
    let last = 0;
    // A regex of its own per call: the recursion below must not move this loop's lastIndex.
    const re = new RegExp(INLINE.source, 'g');
    let m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) out.push(text.slice(last, m.index));
      if (m[2] !== undefined) {
        out.push(el('code', {}, m[2]));
      } else if (m[3] !== undefined) {
        const href = m[4];
        if (/^https?:\/\/[^\s]+$/i.test(href)) {
          out.push(el('a', { href, rel: 'noopener noreferrer nofollow', target: '_blank' }, ...inline(m[3])));
        } else {
          out.push(m[0]); // javascript:, data:, relative …: shown as written, not a link
        }
      } else if (m[5] !== undefined || m[6] !== undefined) {
        out.push(el('strong', {}, ...inline(m[5] ?? m[6])));
      } else {
        out.push(el('em', {}, ...inline(m[7] ?? m[8])));
      }
      last = re.lastIndex;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  /** Inline Markdown with the line breaks of `lines` kept. */
  function inlineLines(lines) {
    const out = [];
    lines.forEach((line, i) => {
      if (i > 0) out.push(el('br'));
      out.push(...inline(line));
    });
    return out;
  }

  const LIST_ITEM = /^\s{0,3}([-*+]|\d{1,9}[.)])\s+(.*)$/;

  /**
   * A safe subset of Markdown as a DocumentFragment: fenced code blocks, headings, lists,
   * paragraphs, and inline code, bold, italic and http(s) links. No HTML is ever parsed.
   */
  function renderMarkdown(source) {
    const frag = document.createDocumentFragment();
    const lines = String(source).replace(/\r\n?/g, '\n').split('\n');
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      const fence = /^\s{0,3}(```+|~~~+)\s*([\w+-]*)\s*$/.exec(line);
      if (fence) {
        const body = [];
        i += 1;
        while (i < lines.length && !lines[i].trimStart().startsWith(fence[1])) {
          body.push(lines[i]);
          i += 1;
        }
        i += 1; // the closing fence (or the end of an unfinished stream)
        const code = el('code', fence[2] ? { 'data-lang': fence[2] } : {}, body.join('\n'));
        frag.append(el('pre', {}, code));
        continue;
      }
      if (!line.trim()) {
        i += 1;
        continue;
      }
      const heading = /^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
      if (heading) {
        const level = Math.min(6, heading[1].length + 2);
        frag.append(el(`h${level}`, {}, ...inline(heading[2])));
        i += 1;
        continue;
      }
      const item = LIST_ITEM.exec(line);
      if (item) {
        const ordered = /\d/.test(item[1]);
        const list = el(ordered ? 'ol' : 'ul');
        while (i < lines.length) {
          const it = LIST_ITEM.exec(lines[i]);
          if (!it || /\d/.test(it[1]) !== ordered) break;
          const parts = [it[2]];
          i += 1;
          // Continuation lines of the item (indented, not a new item or block).
          while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !LIST_ITEM.test(lines[i])) {
            parts.push(lines[i].trim());
            i += 1;
          }
          list.append(el('li', {}, ...inlineLines(parts)));
        }
        frag.append(list);
        continue;
      }
      const para = [];
      while (i < lines.length && lines[i].trim() && !LIST_ITEM.test(lines[i])
        && !/^\s{0,3}(```|~~~|#{1,6}\s)/.test(lines[i])) {
        para.push(lines[i]);
        i += 1;
      }
      frag.append(el('p', {}, ...inlineLines(para)));
    }
    return frag;
  }

  // ------------------------------------------------------------------ the API

  class UiError extends Error {
    /** kind: "auth" (401), "network" (no answer or a dropped stream), "http", "stream" */
    constructor(kind, message, status) {
      super(message);
      this.kind = kind;
      this.status = status;
    }
  }

  function key() {
    return sessionStorage.getItem(KEY_STORE) || '';
  }

  function headers(extra) {
    const h = { 'content-type': 'application/json', ...(extra || {}) };
    if (key()) h.authorization = `Bearer ${key()}`;
    return h;
  }

  /** An error answer as a UiError: the OpenAI envelope's message, by status. */
  async function errorOf(response) {
    let message = response.statusText || 'error';
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) message = body.error.message;
    } catch (_) { /* not JSON */ }
    if (response.status === 401) return new UiError('auth', message, 401);
    return new UiError('http', message, response.status);
  }

  async function call(method, path, body, extraHeaders) {
    let response;
    try {
      response = await fetch(path, {
        method,
        headers: headers(extraHeaders),
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new UiError('network', `the service did not answer (${e.message})`);
    }
    if (!response.ok) throw await errorOf(response);
    return response;
  }

  async function getJson(path) {
    return (await call('GET', path)).json();
  }

  /** Reads an SSE body, calling onEvent(name, data) per event and onComment(text) per comment. */
  async function readSse(response, onEvent, onComment) {
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    const dispatch = (block) => {
      let name = 'message';
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) {
          if (onComment) onComment(line.slice(1).trim());
        } else if (line.startsWith('event:')) {
          name = line.slice(6).trim();
        } else if (line.startsWith('data:')) {
          data.push(line.slice(5).replace(/^ /, ''));
        }
      }
      if (data.length) onEvent(name, data.join('\n'));
    };
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        throw new UiError('network', `the connection dropped (${e.message})`);
      }
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buffer.indexOf('\n\n')) >= 0) {
        dispatch(buffer.slice(0, cut));
        buffer = buffer.slice(cut + 2);
      }
    }
    if (buffer.trim()) dispatch(buffer);
  }

  // ------------------------------------------------------------------ errors and the key

  let retryAction = null;

  function showError(err, retry) {
    const banner = $('banner');
    let text;
    if (err.kind === 'auth') {
      text = key()
        ? `401 Unauthorized: the service refused this API key (${err.message}). Enter another one.`
        : `401 Unauthorized: the service needs an API key (${err.message}). Enter it below.`;
      showKeyForm(true);
    } else if (err.kind === 'network') {
      text = `Connection problem: ${err.message}.`;
    } else if (err.kind === 'stream') {
      text = `The answer failed: ${err.message}`;
    } else {
      const what = err.status >= 500 ? 'Upstream or service error' : 'Request refused';
      text = `${what} (${err.status}): ${err.message}`;
    }
    $('banner-text').textContent = text;
    banner.dataset.kind = err.kind;
    retryAction = retry || null;
    $('banner-retry').hidden = !retry || err.kind === 'auth';
    banner.hidden = false;
  }

  function clearError() {
    $('banner').hidden = true;
    retryAction = null;
  }

  function showKeyForm(show) {
    $('key-form').hidden = !show;
    if (show) $('key').focus();
  }

  // ------------------------------------------------------------------ sessions (sidebar)

  function storedSessions() {
    try {
      const list = JSON.parse(localStorage.getItem(SESSIONS_STORE) || '[]');
      return Array.isArray(list) ? list.filter((s) => s && typeof s.id === 'string') : [];
    } catch (_) {
      return [];
    }
  }

  function saveSessions(list) {
    localStorage.setItem(SESSIONS_STORE, JSON.stringify(list));
  }

  const state = { session: null, busy: false };

  function setCurrent(id) {
    state.session = id;
    if (id) localStorage.setItem(CURRENT_STORE, id);
    else localStorage.removeItem(CURRENT_STORE);
    renderSidebar();
  }

  function rememberSession(id, title) {
    const list = storedSessions();
    if (!list.some((s) => s.id === id)) {
      list.unshift({ id, title: (title || id).slice(0, 80) });
      saveSessions(list);
    }
    setCurrent(id);
  }

  function renderSidebar() {
    const ul = $('sessions');
    ul.replaceChildren();
    for (const s of storedSessions()) {
      const current = s.id === state.session;
      ul.append(el('li', { class: current ? 'current' : '', 'data-session': s.id },
        el('button', {
          type: 'button', class: 'open', title: s.title, 'aria-current': current ? 'true' : null,
          onclick: () => openSession(s.id),
        }, s.title),
        el('button', {
          type: 'button', class: 'delete', 'aria-label': `Delete session ${s.title}`,
          onclick: () => deleteSession(s.id),
        }, '×')));
    }
  }

  /** Drops ids the server no longer knows (expired or deleted elsewhere). */
  async function checkSessions() {
    for (const s of storedSessions()) {
      try {
        await call('GET', `/sessions/${encodeURIComponent(s.id)}`);
      } catch (e) {
        if (e.status === 404) saveSessions(storedSessions().filter((x) => x.id !== s.id));
        else throw e;
      }
    }
    renderSidebar();
  }

  async function openSession(id) {
    closePanelsOnNarrow();
    let session;
    try {
      session = await getJson(`/sessions/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status === 404) {
        saveSessions(storedSessions().filter((x) => x.id !== id));
        if (state.session === id) setCurrent(null);
        renderSidebar();
      }
      showError(e, () => openSession(id));
      return;
    }
    clearError();
    setCurrent(id);
    renderHistory(session);
  }

  async function deleteSession(id) {
    try {
      await call('DELETE', `/sessions/${encodeURIComponent(id)}`);
    } catch (e) {
      if (e.status !== 404) {
        showError(e, () => deleteSession(id));
        return;
      }
    }
    saveSessions(storedSessions().filter((x) => x.id !== id));
    if (state.session === id) newSession();
    else renderSidebar();
  }

  function newSession() {
    setCurrent(null);
    $('log').replaceChildren(el('p', { class: 'empty' }, 'A new conversation: ask something.'));
    closePanelsOnNarrow();
    $('prompt').focus();
  }

  // ------------------------------------------------------------------ the conversation

  function scrollDown() {
    const log = $('log');
    log.scrollTop = log.scrollHeight;
  }

  function addUser(text) {
    const empty = $('log').querySelector('.empty');
    if (empty) empty.remove();
    $('log').append(el('div', { class: 'msg user' }, el('div', { class: 'who' }, 'You'), text));
    scrollDown();
  }

  function prettyJson(text) {
    try {
      return JSON.stringify(JSON.parse(text), null, 2);
    } catch (_) {
      return String(text ?? '');
    }
  }

  /** A collapsible card for one server-side tool call. */
  function toolCard(call) {
    const status = el('span', { class: 'status' }, 'running…');
    const dur = el('span', { class: 'dur' });
    const result = el('pre', { class: 'result' });
    const progress = el('progress', { class: 'progress', hidden: true });
    const card = el('details', { class: 'tool running', open: true, 'data-call': call.id },
      el('summary', {},
        el('span', { class: 'spinner', 'aria-hidden': 'true' }),
        el('code', { class: 'name' }, call.name),
        call.server ? el('span', { class: 'server-name' }, `(${call.server})`) : null,
        status, dur),
      el('div', { class: 'body' },
        el('p', { class: 'label' }, 'Arguments'),
        el('pre', { class: 'arguments' }, prettyJson(call.arguments)),
        progress,
        el('p', { class: 'label' }, 'Result'),
        result));
    card.finish = (ok, text, ms) => {
      card.classList.remove('running', 'waiting');
      card.classList.add(ok ? 'ok' : 'error');
      status.textContent = ok ? 'done' : 'error';
      if (ms !== undefined && ms !== null) dur.textContent = `${ms} ms`;
      result.textContent = prettyJson(text);
      progress.hidden = true;
    };
    card.progress = (done, total) => {
      progress.hidden = false;
      progress.max = total || 1;
      progress.value = done;
    };
    return card;
  }

  /** Approve / Deny for a call that waits on the caller. */
  function approvalCard(a) {
    const card = el('div', { class: 'tool approval', 'data-approval': a.id });
    const answer = (approve) => {
      card.querySelectorAll('button').forEach((b) => { b.disabled = true; });
      card.append(el('p', { class: 'label' }, approve ? 'Approved.' : 'Denied.'));
      answerApproval(a.id, approve);
    };
    card.append(
      el('p', {}, 'The tool ', el('code', {}, a.name), ` on ${a.server_label || 'a server'} waits for your approval:`),
      el('pre', {}, prettyJson(a.arguments)),
      el('div', { class: 'actions' },
        el('button', { type: 'button', class: 'primary', onclick: () => answer(true) }, 'Approve'),
        el('button', { type: 'button', onclick: () => answer(false) }, 'Deny')));
    return card;
  }

  /** One assistant answer: text segments and tool cards in the order they came. */
  class Turn {
    constructor() {
      this.node = el('div', { class: 'msg assistant', 'data-deltas': '0' }, el('div', { class: 'who' }, 'Assistant'));
      this.text = null;
      this.cards = new Map();
      this.finished = false;
      const empty = $('log').querySelector('.empty');
      if (empty) empty.remove();
      $('log').append(this.node);
    }

    segment() {
      if (!this.text) {
        this.text = { source: '', node: el('div', { class: 'text' }) };
        this.node.append(this.text.node);
      }
      return this.text;
    }

    delta(text) {
      if (!text) return;
      const seg = this.segment();
      seg.source += text;
      seg.node.replaceChildren(renderMarkdown(seg.source));
      this.node.dataset.deltas = String(Number(this.node.dataset.deltas) + 1);
      scrollDown();
    }

    toolCall(call) {
      const card = toolCard(call);
      this.cards.set(call.id, card);
      this.text = null; // text after the call is a new segment
      this.node.append(card);
      scrollDown();
    }

    toolResult(r) {
      const card = this.cards.get(r.id);
      if (card) card.finish(r.ok, r.result, r.duration_ms);
    }

    /** A server's progress report on a running call (`tool_progress`). */
    toolProgress(p) {
      const card = this.cards.get(p.id);
      if (card && typeof p.progress === 'number') card.progress(p.progress, p.total);
    }

    approval(a) {
      const card = this.cards.get(a.id);
      if (card) card.remove();
      this.text = null;
      this.node.append(approvalCard(a));
      scrollDown();
    }

    note(text) {
      this.node.append(el('p', { class: 'label' }, text));
    }

    /** The events of /chat/stream. */
    on(name, raw) {
      let d;
      try {
        d = JSON.parse(raw);
      } catch (_) {
        return;
      }
      switch (name) {
        case 'start':
          if (d.session_id) rememberSession(d.session_id, this.title);
          break;
        case 'delta': this.delta(d.text); break;
        case 'tool_call': this.toolCall(d); break;
        case 'tool_result': this.toolResult(d); break;
        case 'tool_progress': this.toolProgress(d); break;
        case 'approval_required': this.approval(d); break;
        case 'elicitation':
          this.note(`${d.server || 'A server'} asked: ${d.message || ''} (declined: this page does not answer forms)`);
          break;
        case 'done':
          this.finished = true;
          if (d.session_id) rememberSession(d.session_id, this.title);
          break;
        case 'error':
          this.finished = true;
          this.failed = new UiError('stream', (d.error && d.error.message) || 'the stream failed');
          break;
        default:
      }
    }

    /** The chunks of /v1/chat/completions (tool events come as SSE comments). */
    onChunk(raw) {
      if (raw === '[DONE]') {
        this.finished = true;
        return;
      }
      let d;
      try {
        d = JSON.parse(raw);
      } catch (_) {
        return;
      }
      if (d.error) {
        this.finished = true;
        this.failed = new UiError('stream', d.error.message || 'the stream failed');
        return;
      }
      const choice = (d.choices || [])[0];
      if (!choice) return;
      const delta = choice.delta || {};
      if (delta.content) this.delta(delta.content);
      for (const a of delta.mcp_approval_requests || []) this.approval(a);
    }

    onComment(text) {
      const m = /^(mcp_tool_call_started|mcp_tool_call_finished) (.*)$/.exec(text);
      if (!m) return;
      let d;
      try {
        d = JSON.parse(m[2]);
      } catch (_) {
        return;
      }
      if (m[1] === 'mcp_tool_call_started') this.toolCall(d);
      else this.toolResult({ ...d, result: d.ok ? '(see the answer)' : '(failed)' });
    }
  }

  /** A stored conversation: messages in OpenAI's shape, tool results by call id. */
  function renderHistory(session) {
    const log = $('log');
    log.replaceChildren();
    let turn = null;
    for (const m of session.messages || []) {
      if (m.role === 'user') {
        turn = null;
        addUser(m.content);
      } else if (m.role === 'assistant') {
        if (!turn) turn = new Turn();
        for (const c of m.tool_calls || []) {
          turn.toolCall({ id: c.id, name: c.function.name, arguments: c.function.arguments });
          turn.cards.get(c.id).classList.replace('running', 'waiting');
        }
        if (m.content) {
          turn.text = null;
          turn.delta(m.content);
        }
      } else if (m.role === 'tool' && turn) {
        turn.toolResult({ id: m.tool_call_id, ok: true, result: m.content });
      }
    }
    if ((session.pending_approvals || []).length) {
      if (!turn) turn = new Turn();
      for (const a of session.pending_approvals) turn.approval(a);
    }
    if (!log.children.length) log.append(el('p', { class: 'empty' }, 'This session has no messages yet.'));
    if (session.model) pickModel(session.model, false);
    scrollDown();
  }

  function setBusy(busy) {
    state.busy = busy;
    $('send').disabled = busy;
  }

  /** The type "mcp" tools of the servers that are ready, each call approved first. */
  function approvalTools() {
    return servers
      .filter((s) => s.state === 'ready')
      .map((s) => ({ type: 'mcp', server_label: s.name, require_approval: 'always' }));
  }

  /** A new session id: 32 hex digits (getRandomValues works outside secure contexts too). */
  function newId() {
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  }

  /** Streams one answer into a new Turn; `request` makes the fetch. */
  async function stream(request, title, retry, openai) {
    clearError();
    setBusy(true);
    const turn = new Turn();
    turn.title = title;
    try {
      const response = await request();
      const sid = response.headers.get('x-session-id');
      if (sid) rememberSession(sid, title);
      if (openai) {
        await readSse(response, (_, data) => turn.onChunk(data), (c) => turn.onComment(c));
      } else {
        await readSse(response, (name, data) => turn.on(name, data));
      }
      if (turn.failed) throw turn.failed;
      if (!turn.finished) throw new UiError('network', 'the connection dropped before the answer ended');
    } catch (e) {
      if (!turn.text && turn.cards.size === 0 && !turn.node.querySelector('.approval')) turn.node.remove();
      else turn.note('(incomplete)');
      showError(e, retry);
    } finally {
      setBusy(false);
    }
  }

  function send(text, again) {
    if (!again) addUser(text);
    const model = $('model').value;
    const retry = () => send(text, true);
    if ($('ask-approval').checked && approvalTools().length) {
      const body = {
        model, stream: true, messages: [{ role: 'user', content: text }], tools: approvalTools(),
      };
      const extra = { 'x-mcp-chat-tool-events': '1' };
      if (state.session) extra['x-session-id'] = state.session;
      else extra['x-session-id'] = newId();
      return stream(() => call('POST', '/v1/chat/completions', body, extra), text, retry, true);
    }
    const body = { message: text, model };
    if (state.session) body.session_id = state.session;
    return stream(() => call('POST', '/chat/stream', body), text, retry, false);
  }

  function answerApproval(id, approve) {
    const body = {
      model: $('model').value,
      stream: true,
      messages: [{ role: 'tool', tool_call_id: id, content: '', approval: { approve } }],
      tools: approvalTools(),
    };
    const extra = { 'x-mcp-chat-tool-events': '1' };
    if (state.session) extra['x-session-id'] = state.session;
    const retry = () => answerApproval(id, approve);
    return stream(() => call('POST', '/v1/chat/completions', body, extra), null, retry, true);
  }

  // ------------------------------------------------------------------ models and tools

  function pickModel(id, save) {
    const select = $('model');
    if (![...select.options].some((o) => o.value === id)) return;
    select.value = id;
    if (save) localStorage.setItem(MODEL_STORE, id);
  }

  async function loadModels() {
    const list = await getJson('/v1/models');
    const select = $('model');
    select.replaceChildren(...(list.data || []).map((m) => el('option', { value: m.id }, m.id)));
    const saved = localStorage.getItem(MODEL_STORE);
    if (saved) pickModel(saved, false);
  }

  let servers = [];

  async function loadServers() {
    const box = $('servers');
    let list;
    try {
      list = await getJson('/v1/mcp/servers');
    } catch (e) {
      box.replaceChildren(el('p', { class: 'label' }, `Could not list the servers: ${e.message}`));
      return;
    }
    servers = list.data || [];
    if (!servers.length) {
      box.replaceChildren(el('p', { class: 'label' }, 'No MCP servers are configured.'));
      return;
    }
    box.replaceChildren(...servers.map((s) => el('section', { class: 'server', 'data-server': s.name },
      el('h3', {}, s.name, ' ', el('span', { class: `state ${s.state}` }, s.state)),
      el('p', { class: 'label' }, `${s.transport}${s.required ? ', required' : ''}${s.restarts ? `, ${s.restarts} restarts` : ''}`),
      s.error ? el('p', { class: 'label' }, s.error) : null,
      el('ul', {}, ...(s.tools || []).map((t) => el('li', {},
        el('code', {}, t.name), t.description ? el('small', {}, t.description) : null))))));
  }

  // ------------------------------------------------------------------ layout and start

  const narrow = () => window.matchMedia('(max-width: 800px)').matches;

  function togglePanel(panel, button, open) {
    const show = open ?? !panel.classList.contains('open');
    panel.classList.toggle('open', show);
    button.setAttribute('aria-expanded', String(show));
    if (panel.id === 'tools') document.querySelector('.layout').classList.toggle('no-tools', !show);
    if (show && narrow()) {
      const first = panel.querySelector('button, input, select');
      if (first) first.focus();
    }
  }

  function closePanelsOnNarrow() {
    if (!narrow()) return;
    togglePanel($('sidebar'), $('toggle-sidebar'), false);
    togglePanel($('tools'), $('toggle-tools'), false);
  }

  async function boot() {
    clearError();
    try {
      await loadModels();
    } catch (e) {
      showError(e, boot);
      return;
    }
    showKeyForm(false);
    await loadServers();
    try {
      await checkSessions();
    } catch (e) {
      showError(e, boot);
      return;
    }
    const current = localStorage.getItem(CURRENT_STORE);
    if (current && storedSessions().some((s) => s.id === current)) await openSession(current);
    else newSession();
    document.body.dataset.ready = 'true';
  }

  function wire() {
    $('composer').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = $('prompt').value.trim();
      if (!text || state.busy) return;
      $('prompt').value = '';
      send(text, false);
    });
    $('prompt').addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        $('composer').requestSubmit();
      }
    });
    $('key-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const value = $('key').value.trim();
      if (value) sessionStorage.setItem(KEY_STORE, value);
      $('key').value = '';
      boot();
    });
    $('key-clear').addEventListener('click', () => {
      sessionStorage.removeItem(KEY_STORE);
      $('key').value = '';
      $('key').focus();
    });
    $('key-button').addEventListener('click', () => showKeyForm($('key-form').hidden));
    $('banner-retry').addEventListener('click', () => {
      const again = retryAction;
      clearError();
      if (again) again();
    });
    $('banner-close').addEventListener('click', clearError);
    $('new-session').addEventListener('click', newSession);
    $('model').addEventListener('change', () => pickModel($('model').value, true));
    $('reload-tools').addEventListener('click', loadServers);
    $('toggle-sidebar').addEventListener('click', () => togglePanel($('sidebar'), $('toggle-sidebar')));
    $('toggle-tools').addEventListener('click', () => togglePanel($('tools'), $('toggle-tools')));
    document.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape') closePanelsOnNarrow();
    });
    togglePanel($('tools'), $('toggle-tools'), !narrow());
    // Crossing the breakpoint: panels fold away on a phone, the tools come back on a desktop.
    window.matchMedia('(max-width: 800px)').addEventListener('change', (ev) => {
      togglePanel($('sidebar'), $('toggle-sidebar'), false);
      togglePanel($('tools'), $('toggle-tools'), !ev.matches);
    });
  }

  // What the Content-Security-Policy blocked (none expected: the page loads nothing else).
  const violations = [];
  document.addEventListener('securitypolicyviolation', (ev) => {
    violations.push(`${ev.violatedDirective} ${ev.blockedURI}`);
  });

  // For the browser tests and the curious: the renderer, callable from the console.
  window.mcpChat = { renderMarkdown, violations };

  wire();
  boot();
})();
