/* qwendesk chat page: answers from documents. The Documents panel ticks collections (GET /api/collections);
 * the chat request then carries "collections": [names], and the reply's "citations" ([{index, path, page,
 * heading, text}]) become a source list under the answer, with the answer's [1], [2] linking to it. */
(function () {
  "use strict";

  const LAST = "qwendesk.collections"; // the ticks a new chat starts with
  const SNIPPET = 320; // characters of a quote shown (all of it is stored)
  const qd = window.qd;

  let opts = null;
  let collections = []; // as the daemon lists them
  let listing = {}; // the rest of its answer: note (keyword search only), documents_folder
  let selected = [];
  let chat = null; // the conversation the ticks belong to (null: a new one)

  function lastUsed() {
    try { return JSON.parse(localStorage.getItem(LAST)) || []; } catch (_e) { return []; }
  }

  /* The list in any of the shapes an API may use: {"collections": [...]}, {"data": [...]} or a bare list. */
  function parse(body) {
    const list = Array.isArray(body) ? body : (body && (body.collections || body.data)) || [];
    return list.map(function (c) { return typeof c === "string" ? { name: c } : c; })
      .filter(function (c) { return c && typeof c.name === "string"; });
  }

  function count(value) {
    if (typeof value === "number") return value;
    if (Array.isArray(value)) return value.length;
    if (value && typeof value === "object") return value.indexed != null ? value.indexed : value.total;
    return null;
  }

  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  /* "3 files · 120 passages · indexing 2/5" from the daemon's status of a collection. */
  function describe(c) {
    const parts = [];
    const files = count(c.files != null ? c.files : c.file_count);
    const chunks = count(c.chunks != null ? c.chunks : c.chunk_count);
    if (files != null) parts.push(plural(files, "file"));
    if (chunks != null) parts.push(plural(chunks, "passage"));
    const p = c.progress;
    let state = c.state || (c.syncing ? "indexing" : "");
    if (p && p.phase === "embed" && p.chunks_total) state += " " + p.chunks_done + "/" + p.chunks_total;
    else if (p && p.files_total) state += " " + p.files_done + "/" + p.files_total;
    if (state && state !== "ready") parts.push(state);
    if (c.errors) parts.push(plural(c.errors, "file") + " not readable");
    const error = c.last_error || c.error;
    if (error) parts.push(error);
    return parts.join(" · ");
  }

  async function refresh() {
    try {
      listing = await (await qd.api.request("/api/collections")).json();
      collections = parse(listing);
    } catch (err) {
      // A daemon without documents has no such route: no panel at all.
      const missing = err.status === 404 || err.status === 405;
      opts.toggle.hidden = missing;
      if (missing) opts.panel.hidden = true;
      else opts.note.textContent = "Cannot list collections: " + err.message;
      return;
    }
    opts.toggle.hidden = false;
    render();
  }

  function render() {
    const box = opts.list;
    box.textContent = "";
    const names = collections.map(function (c) { return c.name; });
    // A ticked collection that is gone stays listed, so it can be unticked.
    const shown = collections.concat(selected.filter(function (n) { return names.indexOf(n) < 0; })
      .map(function (n) { return { name: n, error: "not found" }; }));
    shown.forEach(function (c) {
      const label = document.createElement("label");
      label.className = "coll";
      const tickBox = document.createElement("input");
      tickBox.type = "checkbox";
      tickBox.value = c.name;
      tickBox.dataset.testid = "collection-checkbox";
      tickBox.checked = selected.indexOf(c.name) >= 0;
      tickBox.onchange = function () { tick(c.name, tickBox.checked); };
      const name = document.createElement("span");
      name.className = "coll-name";
      name.textContent = c.name;
      const info = document.createElement("span");
      info.className = "coll-info";
      info.textContent = describe(c);
      label.append(tickBox, name, info);
      box.append(label);
    });
    const empty = !collections.some(function (c) { return count(c.files) || count(c.chunks); });
    const folder = listing && listing.documents_folder;
    opts.note.textContent = empty
      ? "No documents indexed yet: put files into " + (folder || "the documents folder") + ", or index a " +
        "folder of yours with `qwendesk docs add FOLDER`."
      : "Answers quote the passages they use as [1], [2]…" + (listing && listing.note ? " " + listing.note : "");
    opts.count.textContent = selected.length ? " · " + selected.length : "";
  }

  function tick(name, on) {
    selected = selected.filter(function (n) { return n !== name; });
    if (on) selected.push(name);
    localStorage.setItem(LAST, JSON.stringify(selected));
    if (chat) { chat.collections = selected.slice(); opts.save(); }
    opts.count.textContent = selected.length ? " · " + selected.length : "";
  }

  /* The conversation shown now: its own ticks, or for a new chat the last ones used. */
  function use(current) {
    chat = current;
    selected = current ? (current.collections || []).slice() : lastUsed();
    render();
  }

  // ---- citations in answers ------------------------------------------------------------------------

  /* The answer's HTML with each known [n] (or [n, m]) made a link to its source; code and links untouched. */
  function link(html, citations, prefix) {
    const known = citations.map(function (c) { return String(c.index); });
    return html.split(/(<pre[\s\S]*?<\/pre>|<code[^>]*>[\s\S]*?<\/code>|<a [\s\S]*?<\/a>)/).map(function (piece, i) {
      if (i % 2) return piece;
      return piece.replace(/\[(\d+(?:\s*,\s*\d+)*)\]/g, function (whole, list) {
        const numbers = list.split(/\s*,\s*/);
        if (!numbers.every(function (n) { return known.indexOf(n) >= 0; })) return whole;
        return numbers.map(function (n) {
          return '<a class="cite" href="#' + prefix + "-" + n + '" data-cite="' + n + '" aria-label="Source ' +
            n + '">[' + n + "]</a>";
        }).join("");
      });
    }).join("");
  }

  function baseName(path) { return String(path || "").split(/[\\/]/).pop() || String(path || ""); }

  /* The list of sources under an answer; `retrieval` ({collections, note}) says what was searched and how. */
  function list(citations, prefix, retrieval) {
    const box = document.createElement("section");
    box.className = "citations";
    box.dataset.testid = "citations";
    box.setAttribute("aria-label", "Sources");
    const title = document.createElement("h3");
    title.textContent = "Sources";
    const items = document.createElement("ul");
    citations.forEach(function (c) {
      const item = document.createElement("li");
      item.id = prefix + "-" + c.index;
      item.tabIndex = -1; // a [n] link moves the focus here
      item.dataset.testid = "citation";
      const head = document.createElement("div");
      head.className = "cite-head";
      const number = document.createElement("span");
      number.className = "cite-n";
      number.textContent = "[" + c.index + "]";
      const file = document.createElement("span");
      file.className = "cite-file";
      file.textContent = baseName(c.path);
      file.title = c.path || "";
      head.append(number, file);
      const where = [];
      if (c.page != null && c.page !== "") where.push("page " + c.page);
      if (c.heading) where.push(c.heading);
      if (c.path && baseName(c.path) !== c.path) where.push(c.path);
      if (where.length) {
        const at = document.createElement("span");
        at.className = "cite-where";
        at.textContent = where.join(" · ");
        head.append(at);
      }
      item.append(head);
      if (c.text) {
        const quote = document.createElement("blockquote");
        const text = String(c.text).replace(/\s+/g, " ").trim();
        quote.textContent = text.length > SNIPPET ? text.slice(0, SNIPPET).trimEnd() + "…" : text;
        item.append(quote);
      }
      items.append(item);
    });
    box.append(title);
    if (citations.length) box.append(items);
    const notes = [];
    if (!citations.length) {
      const names = retrieval && retrieval.collections ? retrieval.collections.join(", ") : "the collections";
      notes.push("Nothing in " + names + " matched the question: this answer does not come from your documents.");
    }
    if (retrieval && retrieval.note) notes.push(retrieval.note);
    if (notes.length) {
      const p = document.createElement("p");
      p.className = "cite-note";
      p.textContent = notes.join(" ");
      box.append(p);
    }
    return box;
  }

  function follow(event) {
    const a = event.target.closest("a.cite");
    if (!a) return;
    event.preventDefault(); // no jump of the whole page, and the address stays as it is
    const target = document.getElementById(a.getAttribute("href").slice(1));
    if (!target) return;
    target.scrollIntoView({ block: "nearest" });
    target.focus({ preventScroll: true });
    target.classList.remove("flash");
    void target.offsetWidth; // restart the highlight
    target.classList.add("flash");
  }

  /* options: {toggle, panel, list, note, count, messages, save}. */
  function init(options) {
    opts = options;
    opts.toggle.addEventListener("click", function () {
      const open = opts.panel.hidden;
      opts.panel.hidden = !open;
      opts.toggle.setAttribute("aria-expanded", String(open));
      opts.toggle.classList.toggle("on", open);
      if (open) {
        refresh().then(function () {
          const first = opts.list.querySelector("input");
          if (first) first.focus();
        });
      }
    });
    opts.messages.addEventListener("click", follow);
    selected = lastUsed();
    refresh();
  }

  qd.docs = {
    init: init,
    use: use,
    refresh: refresh,
    // Nothing is asked of a daemon without documents, whatever an older page ticked.
    selected: function () { return opts.toggle.hidden ? [] : selected.slice(); },
    link: link,
    list: list,
  };
})();
