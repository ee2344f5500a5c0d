/* qwendesk chat page: talks to the same /v1 API as every other client, stores chats in localStorage.
 * Images (images.js), dictation (voice.js) and answers from documents (citations.js) are their own modules. */
(function () {
  "use strict";

  const STORE = "qwendesk.chats.v1";
  const CURRENT = "qwendesk.current";
  const MODEL = "qwendesk.model";
  const qd = window.qd;
  const can = qd.api.can;
  const $ = function (id) { return document.getElementById(id); };
  const el = {
    model: $("model"), dot: $("model-dot"), caps: $("model-caps"), status: $("status"), messages: $("messages"),
    empty: $("empty"), input: $("input"), send: $("send"), stop: $("stop"), composer: $("composer"),
    history: $("history"), newChat: $("new-chat"), systemToggle: $("system-toggle"), systemPanel: $("system-panel"),
    system: $("system"), main: $("main"),
  };

  let chats = load();
  let current = chats.find(function (c) { return c.id === localStorage.getItem(CURRENT); }) || null;
  let controller = null; // AbortController of the reply being streamed
  let models = [];
  let storageFull = false;

  // ---- storage ---------------------------------------------------------------------------------
  function load() {
    try { return JSON.parse(localStorage.getItem(STORE)) || []; } catch (_e) { return []; }
  }
  function save() {
    try {
      localStorage.setItem(STORE, JSON.stringify(chats));
      if (current) localStorage.setItem(CURRENT, current.id); else localStorage.removeItem(CURRENT);
      if (storageFull) qd.say("");
      storageFull = false;
    } catch (_e) {
      // The browser keeps about 5 MB per site; nothing is lost while the page stays open.
      storageFull = true;
      qd.say("Browser storage is full: this chat is kept only while the page is open. Delete older chats " +
        "(those with images take the most room) to keep it.", "error");
    }
  }
  function newId() { return Date.now().toString(36) + Math.random().toString(36).slice(2, 8); }

  // ---- models ---------------------------------------------------------------------------------------
  function chatsWith(m) { return !m.capabilities || can(m, "chat") || can(m, "completions"); }
  function selected() { return models.find(function (x) { return x.id === el.model.value; }) || null; }

  async function refreshModels() {
    try {
      const body = await (await qd.api.request("/v1/models")).json();
      models = body.data || [];
    } catch (err) {
      setStatus("Cannot list models: " + err.message, "error");
      return;
    }
    qd.voice.update(models);
    const chatModels = models.filter(chatsWith); // embedding and speech models answer no chat
    const wanted = el.model.value || (current && current.model) || localStorage.getItem(MODEL);
    el.model.textContent = "";
    if (!chatModels.length) {
      const opt = new Option("No models — add a .gguf to the models folder", "");
      opt.disabled = true;
      el.model.add(opt);
    }
    const order = { running: 0, starting: 1, available: 2, stopping: 3, error: 4 };
    chatModels.slice().sort(function (a, b) { return (order[a.state] - order[b.state]) || a.id.localeCompare(b.id); })
      .forEach(function (m) {
        const label = m.id + (m.parameters ? " · " + m.parameters : "") + (can(m, "vision") ? " · vision" : "") +
          (m.state !== "running" ? " (" + m.state + ")" : "");
        const opt = new Option(label, m.id);
        opt.disabled = m.state === "error";
        if (m.error) opt.title = m.error;
        el.model.add(opt);
      });
    const pick = chatModels.find(function (m) { return m.id === wanted && m.state !== "error"; }) ||
      chatModels.find(function (m) { return m.state === "running"; }) ||
      chatModels.find(function (m) { return m.state !== "error"; });
    if (pick) el.model.value = pick.id;
    showModelState();
  }
  function showModelState() {
    const m = selected();
    el.dot.className = "dot " + (m ? m.state : "");
    el.dot.title = m ? m.state : "";
    el.caps.textContent = can(m, "vision") ? "sees images" : "";
    $("attach").classList.toggle("off", !can(m, "vision"));
    if (!controller) setStatus(m && m.state !== "running" ? "Starts on your first message" : "");
  }

  /* Why images cannot go to the selected model ("" when they can), with what to do instead. */
  function imageRefusal() {
    const m = selected();
    if (!m) return "Pick a model first.";
    if (can(m, "vision")) return "";
    const seers = models.filter(function (x) { return can(x, "vision") && x.state !== "error"; })
      .map(function (x) { return x.id; });
    return m.id + " cannot see images. " + (seers.length
      ? "Pick a model marked “vision” to send images: " + seers.join(", ") + "."
      : "No model here can: add a vision model (a GGUF with its mmproj projector file) to the models folder.");
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
  function messageNode(msg, index) {
    const row = document.createElement("div");
    row.className = "msg " + msg.role;
    row.dataset.testid = "message-" + msg.role;
    row.dataset.index = String(index);
    if (msg.images && msg.images.length) row.append(qd.images.thumbs(msg.images));
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
    const prefix = "cite-" + row.dataset.index;
    if (msg.role === "assistant") {
      let html = msg.content ? window.qdMarkdown.render(msg.content) : "";
      if (html && msg.citations && msg.citations.length) html = qd.docs.link(html, msg.citations, prefix);
      if (!html && !msg.error && !msg.stopped) html = '<span class="typing"><i></i><i></i><i></i></span>';
      bubble.innerHTML = html;
      if (msg.error) {
        const box = document.createElement("div");
        box.className = "error-box";
        box.dataset.testid = "error";
        box.setAttribute("role", "alert");
        box.textContent = msg.error;
        bubble.append(box);
      }
      const old = row.querySelector(".citations");
      if (old) old.remove();
      if ((msg.citations && msg.citations.length) || msg.retrieval) {
        row.insertBefore(qd.docs.list(msg.citations || [], prefix, msg.retrieval), row.querySelector(".meta"));
      }
    } else {
      bubble.textContent = msg.content;
      bubble.hidden = !msg.content; // an image on its own
    }
    const meta = row.querySelector(".meta");
    const parts = [];
    if (msg.model) parts.push(msg.model);
    if (msg.stats && msg.stats.tokens) parts.push(msg.stats.tokens + " tokens");
    if (msg.stats && msg.stats.tps) parts.push(msg.stats.tps.toFixed(1) + " tok/s");
    if (msg.stopped) parts.push("stopped");
    if (msg.error) parts.push("error");
    meta.textContent = parts.join(" · ");
    meta.classList.toggle("error", !!msg.error);
  }
  function renderAll() {
    renderHistory();
    el.messages.querySelectorAll(".msg").forEach(function (n) { n.remove(); });
    const msgs = current ? current.messages : [];
    el.empty.hidden = msgs.length > 0;
    msgs.forEach(function (m, i) { el.messages.append(messageNode(m, i)); });
    el.system.value = current ? current.system || "" : "";
    qd.docs.use(current);
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
  async function send(text, images) {
    const model = el.model.value;
    if (!current) {
      current = { id: newId(), title: "", model: model, system: el.system.value, messages: [], updated: Date.now() };
      chats.push(current);
    }
    current.model = model;
    current.system = el.system.value;
    current.collections = qd.docs.selected();
    if (!current.title) current.title = text.slice(0, 60) || (images.length ? "Image" : "");
    const question = { role: "user", content: text };
    if (images.length) question.images = images;
    current.messages.push(question);
    const reply = { role: "assistant", content: "", model: model };
    current.messages.push(reply);
    current.updated = Date.now();
    localStorage.setItem(MODEL, model);
    save();
    renderAll();
    const row = el.messages.lastElementChild;
    await stream(current, reply, row);
  }

  /* The conversation as OpenAI messages. Images go as image parts to a model that sees; a text-only model
   * (the user switched models mid-chat) gets the text and a marker, since the daemon refuses image parts. */
  function requestMessages(chat, sees) {
    const msgs = [];
    if (chat.system && chat.system.trim()) msgs.push({ role: "system", content: chat.system.trim() });
    chat.messages.slice(0, -1).forEach(function (m) {
      const images = m.role === "user" && m.images ? m.images : [];
      if (images.length && sees) msgs.push({ role: m.role, content: qd.images.parts(m.content, images) });
      else if (images.length) msgs.push({ role: m.role, content: (m.content ? m.content + "\n" : "") + "[image]" });
      else if (m.content) msgs.push({ role: m.role, content: m.content });
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
    const body = {
      model: reply.model, messages: requestMessages(chat, can(m, "vision")), stream: true,
      stream_options: { include_usage: true },
    };
    if (chat.collections && chat.collections.length) body.collections = chat.collections;
    try {
      const response = await qd.api.request("/v1/chat/completions", {
        method: "POST", signal: controller.signal, body: JSON.stringify(body),
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
          if (chunk.error) throw new Error(qd.api.errorText(chunk, JSON.stringify(chunk.error)));
          const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
          const text = delta && (delta.content || "");
          if (text) {
            if (!first) first = performance.now();
            pieces++;
            reply.content += text;
            if (!frame) frame = requestAnimationFrame(repaint);
          }
          if (Array.isArray(chunk.citations)) reply.citations = chunk.citations;
          const found = chunk.retrieval;
          if (found) reply.retrieval = { collections: found.collections, note: found.note };
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
    if ((!text && !qd.images.count()) || controller) return;
    if (!el.model.value) { setStatus("Pick a model first", "error"); return; }
    if (qd.images.count()) {
      const refusal = imageRefusal();
      if (refusal) { qd.say(refusal, "error"); return; } // the images stay in the composer
    }
    qd.say("");
    el.input.value = "";
    autosize();
    send(text, qd.images.take());
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
    if (qd.images.count() && imageRefusal()) qd.say(imageRefusal(), "error");
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

  qd.images.init({
    tray: $("attachments"), file: $("file"), attach: $("attach"), zone: el.main, input: el.input,
    composer: el.composer, check: imageRefusal,
  });
  qd.voice.init({ button: $("mic"), input: el.input });
  qd.docs.init({
    toggle: $("docs-toggle"), panel: $("docs-panel"), list: $("collections"), note: $("docs-note"),
    count: $("docs-count"), messages: el.messages, save: save,
  });

  refreshModels().then(renderAll);
  setInterval(function () { if (!controller && !document.hidden) refreshModels(); }, 10000);
  el.input.focus();
})();
