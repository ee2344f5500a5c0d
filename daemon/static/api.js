/* qwendesk chat page: the HTTP side shared by every module (token, errors in readable words). */
(function () {
  "use strict";

  const TOKEN = "qwendesk.token";
  const qd = window.qd = window.qd || {};

  function authHeaders(json) {
    const h = json ? { "Content-Type": "application/json" } : {};
    const token = localStorage.getItem(TOKEN);
    if (token) h.Authorization = "Bearer " + token;
    return h;
  }

  /* What an error body says, in one line: OpenAI's {"error": {"message", "code"}}, the control API's
   * {"error": message, "code"}, FastAPI's {"detail": ...}; else the HTTP status. */
  function errorText(body, fallback) {
    if (!body || typeof body !== "object") return fallback;
    const err = body.error;
    if (err && typeof err === "object" && err.message) return String(err.message);
    if (typeof err === "string" && err) return err;
    if (typeof body.detail === "string") return body.detail;
    if (Array.isArray(body.detail)) {
      return body.detail.map(function (d) { return (d.loc ? d.loc.join(".") + ": " : "") + d.msg; }).join("; ");
    }
    return fallback;
  }

  class ApiError extends Error {
    constructor(message, status, code) {
      super(message);
      this.name = "ApiError";
      this.status = status;
      this.code = code || "";
    }
  }

  async function failure(response) {
    const fallback = response.status + " " + (response.statusText || "error");
    let body = null;
    try { body = await response.json(); } catch (_e) { /* not JSON */ }
    const err = body && body.error;
    const code = err && typeof err === "object" ? err.code : body && body.code;
    return new ApiError(errorText(body, fallback), response.status, code);
  }

  /* fetch() with the token; asks for the token on a 401 and tries again; a non-2xx answer throws ApiError.
   * options.body may be a string (sent as JSON) or FormData (the browser sets its multipart type). */
  async function request(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = authHeaders(typeof opts.body === "string");
    const response = await fetch(path, opts);
    if (response.status === 401) {
      await askToken();
      return request(path, options);
    }
    if (!response.ok) throw await failure(response);
    return response;
  }

  function askToken() {
    const dialog = document.getElementById("token-dialog");
    const form = document.getElementById("token-form");
    const input = document.getElementById("token-input");
    return new Promise(function (resolve) {
      input.value = "";
      form.onsubmit = function (event) {
        event.preventDefault();
        localStorage.setItem(TOKEN, input.value.trim());
        dialog.close();
        resolve();
      };
      if (!dialog.open) dialog.showModal();
    });
  }

  /* Capabilities as /v1/models lists them ("vision", "audio", "transcribe", "chat", ...). */
  function can(model, capability) {
    return !!(model && Array.isArray(model.capabilities) && model.capabilities.indexOf(capability) >= 0);
  }

  /* One line under the composer for hints and refusals (attachments, microphone); "" clears it. */
  function say(text, kind) {
    const note = document.getElementById("note");
    note.textContent = text || "";
    note.className = "note" + (kind ? " " + kind : "");
  }

  qd.api = { request: request, errorText: errorText, ApiError: ApiError, can: can };
  qd.say = say;
})();
