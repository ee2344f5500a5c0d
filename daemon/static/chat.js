/* qwendesk chat page: talks to the same /v1 API as every other client, stores chats in localStorage. */
(function () {
  "use strict";

  const STORE = "qwendesk.chats.v1";
  const CURRENT = "qwendesk.current";
  const MODEL = "qwendesk.model";
  const TOKEN = "qwendesk.token";
  const $ = function (id) { return document.getElementById(id); };
  const el = {
    model: $("model"), dot: $("model-dot"), status: $("status"), messages: $("messages"), empty: $("empty"),
    input: $("input"), send: $("send"), stop: $("stop"), composer: $("composer"), history: $("history"),
    newChat: $("new-chat"), systemToggle: $("system-toggle"), systemPanel: $("system-panel"), system: $("system"),
    tokenDialog: $("token-dialog"), tokenForm: $("token-form"), tokenInput: $("token-input"),
  };

  let chats = load();
  let current = chats.find(function (c) { return c.id === localStorage.getItem(CURRENT); }) || null;
  let controller = null; // AbortController of the reply being streamed
  let models = [];

  // ---- storage ---------------------------------------------------------------------------------
  function load() {
    try { return JSON.parse(localStorage.getItem(STORE)) || []; } catch (_e) { return []; }
  }
  function save() {
    localStorage.setItem(STORE, JSON.stringify(chats));
    if (current) localStorage.setItem(CURRENT, current.id); else localStorage.removeItem(CURRENT);
  }
  function newId() { return Date.now().toString(36) + Math.random().toString(36).slice(2, 8); }

  // ---- API ------------------------------------------------------------------------------------------
  function headers() {
    const h = { "Content-Type": "application/json" };
    const token = localStorage.getItem(TOKEN);
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }
  async function api(path, options) {
    const response = await fetch(path, Object.assign({ headers: headers() }, options || {}));
    if (response.status === 401) {
      await askToken();
      return api(path, options);
    }
    if (!response.ok) {
      let message = response.status + " " + response.statusText;
      try { const body = await response.json(); message = (body.error && (body.error.message || body.error)) || message; } catch (_e) { /* not JSON */ }
      throw new Error(message);
    }
    return response;
  }
  function askToken() {
    return new Promise(function (resolve) {
      el.tokenInput.value = "";
      el.tokenForm.onsubmit = function (event) {
        event.preventDefault();
        localStorage.setItem(TOKEN, el.tokenInput.value.trim());
        el.tokenDialog.close();
        resolve();
      };
      if (!el.tokenDialog.open) el.tokenDialog.showModal();
    });
  }

  // ---- models ---------------------------------------------------------------------------------------
  async function refreshModels() {
    try {
      const body = await (await api("/v1/models")).json();
      models = body.data || [];
    } catch (err) {
      setStatus("Cannot list models: " + err.message, "error");
      return;
    }
    const wanted = el.model.value || (current && current.model) || localStorage.getItem(MODEL);
    el.model.textContent = "";
    if (!models.length) {
      const opt = new Option("No models — add a .gguf to the models folder", "");
      opt.disabled = true;
      el.model.add(opt);
    }
    const order = { running: 0, starting: 1, available: 2, stopping: 3, error: 4 };
    models.slice().sort(function (a, b) { return (order[a.state] - order[b.state]) || a.id.localeCompare(b.id); })
      .forEach(function (m) {
        const label = m.id + (m.parameters ? " · " + m.parameters : "") + (m.state !== "running" ? " (" + m.state + ")" : "");
        const opt = new Option(label, m.id);
        opt.disabled = m.state === "error";
        if (m.error) opt.title = m.error;
        el.model.add(opt);
      });
    const pick = models.find(function (m) { return m.id === wanted && m.state !== "error"; }) ||
      models.find(function (m) { return m.state === "running"; }) ||
      models.find(function (m) { return m.state !== "error"; });
    if (pick) el.model.value = pick.id;
    showModelState();
  }
  function showModelState() {
    const m = models.find(function (x) { return x.id === el.model.value; });
    el.dot.className = "dot " + (m ? m.state : "");
    el.dot.title = m ? m.state : "";
    if (!controller) setStatus(m && m.state !== "running" ? "Starts on your first message" : "");
  }

  // ---- rendering --------------------------------------------------------------------------------------
  function setStatus(text, kind) {
    el.status.textContent = text || "";
    el.status.className = "status" + (kind ? " " + kind : "");
  }
  function renderHistory() {
    el.history.textContent = "";
    chats.slice().sort(function (a, b) { return b.updated - a.updated; }).forEach(function (chat) {
      const item = document.createElement("div");
      item.className = "history-item" + (current && chat.id === current.id ? " active" : "");
      item.dataset.testid = "history-item";
      const title = document.createElement("button");
      title.type = "button";
      title.className = "history-title";
      title.textContent = chat.title || "New chat";
      title.onclick = function () { if (!controller) { current = chat; save(); renderAll(); } };
      const del = document.createElement("button");
      del.type = "button";
      del.className = "history-delete";
      del.title = "Delete chat";
      del.setAttribute("aria-label", "Delete chat");
      del.textContent = "×";
      del.onclick = function () {
        if (controller) return;
        chats = chats.filter(function (c) { return c.id !== chat.id; });
        if (current && current.id === chat.id) current = null;
        save();
        renderAll();
      };
      item.append(title, del);
      el.history.append(item);
    });
  }
  function messageNode(msg) {
    const row = document.createElement("div");
    row.className = "msg " + msg.role;
    row.dataset.testid = "message-" + msg.role;
    const bubble = document.createElement("div");
    bubble.className = "bubble";
    row.append(bubble);
    const meta = document.createElement("div");
    meta.className = "meta";
    meta.dataset.testid = "stats";
    row.append(meta);
    paint(row, msg);
    return row;
  }
  function paint(row, msg) {
    const bubble = row.querySelector(".bubble");
    if (msg.role === "assistant") {
      bubble.innerHTML = msg.content ? window.qdMarkdown.render(msg.content) : '<span class="typing"><i></i><i></i><i></i></span>';
    } else {
      bubble.textContent = msg.content;
    }
    const meta = row.querySelector(".meta");
    const parts = [];
    if (msg.model) parts.push(msg.model);
    if (msg.stats && msg.stats.tokens) parts.push(msg.stats.tokens + " tokens");
    if (msg.stats && msg.stats.tps) parts.push(msg.stats.tps.toFixed(1) + " tok/s");
    if (msg.stopped) parts.push("stopped");
    if (msg.error) parts.push("error: " + msg.error);
    meta.textContent = parts.join(" · ");
    meta.classList.toggle("error", !!msg.error);
  }
  function renderAll() {
    renderHistory();
    el.messages.querySelectorAll(".msg").forEach(function (n) { n.remove(); });
    const msgs = current ? current.messages : [];
    el.empty.hidden = msgs.length > 0;
    msgs.forEach(function (m) { el.messages.append(messageNode(m)); });
    el.system.value = current ? current.system || "" : "";
    if (current && current.model && models.some(function (m) { return m.id === current.model; })) {
      el.model.value = current.model;
      showModelState();
    }
    scrollDown(true);
  }
  function scrollDown(force) {
    const nearBottom = el.messages.scrollHeight - el.messages.scrollTop - el.messages.clientHeight < 120;
    if (force || nearBottom) el.messages.scrollTop = el.messages.scrollHeight;
  }

  // ---- sending ------------------------------------------------------------------------------------------
  function busy(on) {
    el.send.hidden = on;
    el.stop.hidden = !on;
    el.model.disabled = on;
  }
  async function send(text) {
    const model = el.model.value;
    if (!model) { setStatus("Pick a model first", "error"); return; }
    if (!current) {
      current = { id: newId(), title: "", model: model, system: el.system.value, messages: [], updated: Date.now() };
      chats.push(current);
    }
    current.model = model;
    current.system = el.system.value;
    if (!current.title) current.title = text.slice(0, 60);
    current.messages.push({ role: "user", content: text });
    const reply = { role: "assistant", content: "", model: model };
    current.messages.push(reply);
    current.updated = Date.now();
    localStorage.setItem(MODEL, model);
    save();
    renderAll();
    const row = el.messages.lastElementChild;
    await stream(current, reply, row);
  }

  function requestMessages(chat) {
    const msgs = [];
    if (chat.system && chat.system.trim()) msgs.push({ role: "system", content: chat.system.trim() });
    chat.messages.slice(0, -1).forEach(function (m) {
      if (m.content) msgs.push({ role: m.role, content: m.content });
    });
    return msgs;
  }

  async function stream(chat, reply, row) {
    controller = new AbortController();
    busy(true);
    const m = models.find(function (x) { return x.id === reply.model; });
    setStatus(m && m.state !== "running" ? "Starting " + reply.model + "…" : "Thinking…");
    const started = performance.now();
    let first = 0;
    let pieces = 0;
    let frame = 0;
    const repaint = function () { frame = 0; paint(row, reply); scrollDown(false); };
    try {
      const response = await api("/v1/chat/completions", {
        method: "POST",
        signal: controller.signal,
        body: JSON.stringify({
          model: reply.model, messages: requestMessages(chat), stream: true,
          stream_options: { include_usage: true },
        }),
      });
      setStatus("");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const part = await reader.read();
        if (part.done) break;
        buffer += decoder.decode(part.value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const event = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          const data = event.split("\n").filter(function (l) { return l.startsWith("data:"); })
            .map(function (l) { return l.slice(5).trim(); }).join("\n");
          if (!data || data === "[DONE]") continue;
          const chunk = JSON.parse(data);
          if (chunk.error) throw new Error(chunk.error.message || JSON.stringify(chunk.error));
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          const text = delta && (delta.content || "");
          if (text) {
            if (!first) first = performance.now();
            pieces++;
            reply.content += text;
            if (!frame) frame = requestAnimationFrame(repaint);
          }
          if (chunk.usage) reply.stats = { tokens: chunk.usage.completion_tokens };
        }
      }
    } catch (err) {
      if (err.name === "AbortError") reply.stopped = true;
      else reply.error = err.message;
    } finally {
      const end = performance.now();
      const tokens = (reply.stats && reply.stats.tokens) || pieces;
      const seconds = first ? (end - first) / 1000 : 0;
      reply.stats = { tokens: tokens, tps: seconds > 0.05 && tokens > 1 ? (tokens - 1) / seconds : 0, ms: end - started };
      if (frame) cancelAnimationFrame(frame);
      paint(row, reply);
      chat.updated = Date.now();
      save();
      controller = null;
      busy(false);
      setStatus(reply.error ? reply.error : "", reply.error ? "error" : "");
      refreshModels();
      el.input.focus();
    }
  }

  // ---- wiring -------------------------------------------------------------------------------------------
  el.composer.addEventListener("submit", function (event) {
    event.preventDefault();
    const text = el.input.value.trim();
    if (!text || controller) return;
    el.input.value = "";
    autosize();
    send(text);
  });
  el.input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      el.composer.requestSubmit();
    }
  });
  function autosize() {
    el.input.style.height = "auto";
    el.input.style.height = Math.min(el.input.scrollHeight, 220) + "px";
  }
  el.input.addEventListener("input", autosize);
  el.stop.addEventListener("click", function () { if (controller) controller.abort(); });
  el.newChat.addEventListener("click", function () {
    if (controller) controller.abort();
    current = null;
    save();
    renderAll();
    el.input.focus();
  });
  el.model.addEventListener("change", function () {
    localStorage.setItem(MODEL, el.model.value);
    if (current) { current.model = el.model.value; save(); }
    showModelState();
  });
  el.systemToggle.addEventListener("click", function () {
    const open = el.systemPanel.hidden;
    el.systemPanel.hidden = !open;
    el.systemToggle.setAttribute("aria-expanded", String(open));
    el.systemToggle.classList.toggle("on", open);
    if (open) el.system.focus();
  });
  el.system.addEventListener("input", function () {
    if (current) { current.system = el.system.value; save(); }
  });
  el.messages.addEventListener("click", function (event) {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const code = button.closest(".code").querySelector("code").textContent;
    navigator.clipboard.writeText(code).then(function () {
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = "Copy"; }, 1200);
    }, function () { button.textContent = "Copy failed"; });
  });

  refreshModels().then(renderAll);
  setInterval(function () { if (!controller && !document.hidden) refreshModels(); }, 10000);
  el.input.focus();
})();
