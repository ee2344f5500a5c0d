/* A small, safe Markdown renderer for model replies (no dependencies, works offline).
 * Everything is HTML-escaped first; only the constructs below become markup. Handles an unfinished
 * code fence (the reply is still streaming) by rendering the rest as code. */
(function () {
  "use strict";

  function escapeHtml(text) {
    return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
  }

  function inline(text) {
    // Protect inline code first so its content is not formatted.
    const codes = [];
    let out = escapeHtml(text).replace(/`([^`\n]+)`/g, function (_m, code) {
      codes.push(code);
      return "\u0000" + (codes.length - 1) + "\u0000";
    });
    out = out
      .replace(/\*\*([^*\n]+)\*\*/g, "<strong>$1</strong>")
      .replace(/__([^_\n]+)__/g, "<strong>$1</strong>")
      .replace(/(^|[^*\w])\*([^*\n]+)\*(?!\w)/g, "$1<em>$2</em>")
      .replace(/~~([^~\n]+)~~/g, "<del>$1</del>")
      .replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g,
        '<a href="$2" target="_blank" rel="noopener noreferrer">$1</a>');
    return out.replace(/\u0000(\d+)\u0000/g, function (_m, i) { return "<code>" + codes[+i] + "</code>"; });
  }

  function codeBlock(lang, code) {
    const label = lang ? escapeHtml(lang) : "code";
    const cls = lang ? ' class="language-' + escapeHtml(lang) + '"' : "";
    return '<div class="code"><div class="code-head"><span>' + label +
      '</span><button type="button" class="copy" data-copy>Copy</button></div><pre><code' + cls + ">" +
      escapeHtml(code) + "</code></pre></div>";
  }

  function table(rows) {
    const cells = function (row) {
      return row.replace(/^\s*\|/, "").replace(/\|\s*$/, "").split("|").map(function (c) { return c.trim(); });
    };
    const head = cells(rows[0]);
    let html = "<table><thead><tr>" + head.map(function (c) { return "<th>" + inline(c) + "</th>"; }).join("") +
      "</tr></thead><tbody>";
    rows.slice(2).forEach(function (row) {
      html += "<tr>" + cells(row).map(function (c) { return "<td>" + inline(c) + "</td>"; }).join("") + "</tr>";
    });
    return html + "</tbody></table>";
  }

  function blocks(text) {
    const lines = text.split("\n");
    const html = [];
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) { i++; continue; }
      let m;
      if ((m = /^(#{1,6})\s+(.*)$/.exec(line))) {
        const level = Math.min(m[1].length + 1, 6); // h1 in a reply is too loud: shift down one level
        html.push("<h" + level + ">" + inline(m[2]) + "</h" + level + ">");
        i++;
      } else if (/^\s*([-*_])(\s*\1){2,}\s*$/.test(line)) {
        html.push("<hr>");
        i++;
      } else if (/^\s*>/.test(line)) {
        const quote = [];
        while (i < lines.length && /^\s*>/.test(lines[i])) { quote.push(lines[i].replace(/^\s*>\s?/, "")); i++; }
        html.push("<blockquote>" + blocks(quote.join("\n")) + "</blockquote>");
      } else if (/^\s*([-*+]|\d+[.)])\s+/.test(line)) {
        const ordered = /^\s*\d+[.)]\s+/.test(line);
        const items = [];
        while (i < lines.length && /^\s*([-*+]|\d+[.)])\s+/.test(lines[i])) {
          let item = lines[i].replace(/^\s*([-*+]|\d+[.)])\s+/, "");
          i++;
          while (i < lines.length && /^\s{2,}\S/.test(lines[i]) && !/^\s*([-*+]|\d+[.)])\s+/.test(lines[i])) {
            item += " " + lines[i].trim();
            i++;
          }
          items.push("<li>" + inline(item) + "</li>");
        }
        html.push((ordered ? "<ol>" : "<ul>") + items.join("") + (ordered ? "</ol>" : "</ul>"));
      } else if (/\|/.test(line) && i + 1 < lines.length && /^\s*\|?\s*:?-{3,}/.test(lines[i + 1])) {
        const rows = [];
        while (i < lines.length && /\|/.test(lines[i])) { rows.push(lines[i]); i++; }
        html.push(table(rows));
      } else {
        const para = [];
        while (i < lines.length && lines[i].trim() && !/^(#{1,6}\s|\s*>|\s*([-*+]|\d+[.)])\s+)/.test(lines[i])) {
          para.push(inline(lines[i]));
          i++;
        }
        html.push("<p>" + para.join("<br>") + "</p>");
      }
    }
    return html.join("");
  }

  function render(src) {
    const out = [];
    const fence = /^```\s*([\w+#.-]*)\s*$/;
    const lines = (src || "").replace(/\r\n/g, "\n").split("\n");
    let prose = [];
    let i = 0;
    while (i < lines.length) {
      const open = fence.exec(lines[i]);
      if (!open) { prose.push(lines[i]); i++; continue; }
      out.push(blocks(prose.join("\n")));
      prose = [];
      const code = [];
      i++;
      while (i < lines.length && !/^```\s*$/.test(lines[i])) { code.push(lines[i]); i++; }
      i++; // the closing fence (or the end of an unfinished one)
      out.push(codeBlock(open[1], code.join("\n")));
    }
    out.push(blocks(prose.join("\n")));
    return out.join("");
  }

  window.qdMarkdown = { render: render, escapeHtml: escapeHtml };
})();
