/* qwendesk chat page: images in the composer (attach, paste, drop), their thumbnails, and OpenAI image parts.
 *
 * Every image is scaled once, in a canvas, to at most MAX_SIDE px on its longest side and encoded as JPEG
 * (PNG when that is smaller, e.g. flat drawings); that one copy is shown, stored with the chat and sent on
 * every turn. One copy, because the same bytes each turn let llama.cpp's prompt cache reuse the encoded
 * image: measured through the daemon, a second turn reused 537 cached prompt tokens (image included) and
 * computed 35, while the same picture re-encoded (other bytes) computed all 539 again.
 * Its size is set by localStorage, about 5.24 M characters per origin in Chromium. Measured in Chromium at
 * 1024 px / JPEG 0.8: a noisy 12 MP photo stores as 304 K characters, a 1920 x 1080 screenshot as 155 K
 * (JPEG 0.85 costs 10-15 % more; 768 px would save a quarter but blur a screenshot's text). 1024 px is above
 * the daemon's default pixel budget (image_max_pixels, about 630 x 630), which scales further, so a raised
 * budget still gets detail. */
(function () {
  "use strict";

  const MAX_SIDE = 1024;
  const QUALITY = 0.8;
  const MAX_IMAGES = 4; // per message
  const MAX_SOURCE_BYTES = 40 * 1024 * 1024; // a bigger file is not decoded at all
  const qd = window.qd;

  let pending = []; // [{url, width, height, name}] waiting in the composer
  let opts = null;

  /* The file as one stored copy: {url: "data:image/jpeg;base64,...", width, height, name}. */
  async function shrink(file) {
    // createImageBitmap, not <img src=blob:>: the page's CSP allows only 'self' and data: images.
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    const width = Math.max(1, Math.round(bitmap.width * scale));
    const height = Math.max(1, Math.round(bitmap.height * scale));
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#ffffff"; // JPEG has no alpha: transparent areas become white, not black
    ctx.fillRect(0, 0, width, height);
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(bitmap, 0, 0, width, height);
    if (bitmap.close) bitmap.close();
    let url = canvas.toDataURL("image/jpeg", QUALITY);
    if (/^image\/(png|gif|webp|bmp)$/.test(file.type)) {
      const png = canvas.toDataURL("image/png");
      if (png.length < url.length) url = png;
    }
    return { url: url, width: width, height: height, name: file.name || "image" };
  }

  function isImage(file) { return file && /^image\//.test(file.type); }

  /* Files from the picker, a paste or a drop: refused with a hint when the model cannot see. */
  async function add(fileList) {
    const files = Array.prototype.slice.call(fileList || []);
    if (!files.length) return;
    const refusal = opts.check();
    if (refusal) { qd.say(refusal, "error"); return; }
    const images = files.filter(isImage);
    const problems = [];
    if (images.length < files.length) problems.push("Only images can be attached (PNG, JPEG, WebP, GIF).");
    const room = MAX_IMAGES - pending.length;
    if (images.length > room) problems.push("At most " + MAX_IMAGES + " images per message.");
    for (const file of images.slice(0, Math.max(room, 0))) {
      if (file.size > MAX_SOURCE_BYTES) {
        problems.push(file.name + " is larger than " + (MAX_SOURCE_BYTES >> 20) + " MB.");
        continue;
      }
      try {
        pending.push(await shrink(file));
      } catch (_e) {
        problems.push("Cannot read " + (file.name || "the image") + ": use a PNG, JPEG, WebP or GIF file.");
      }
    }
    qd.say(problems.join(" "), problems.length ? "error" : "");
    render();
    opts.input.focus();
  }

  function render() {
    const tray = opts.tray;
    tray.textContent = "";
    tray.hidden = pending.length === 0;
    pending.forEach(function (image, i) {
      const item = document.createElement("figure");
      item.className = "att";
      item.dataset.testid = "attachment";
      const img = document.createElement("img");
      img.src = image.url;
      img.alt = image.name;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "att-remove";
      remove.textContent = "×";
      remove.setAttribute("aria-label", "Remove image " + (i + 1) + " (" + image.name + ")");
      remove.onclick = function () {
        pending.splice(i, 1);
        render();
        opts.input.focus();
      };
      item.append(img, remove);
      tray.append(item);
    });
  }

  /* Thumbnails of a message's images; each opens the stored copy in a dialog. */
  function thumbs(images) {
    const box = document.createElement("div");
    box.className = "thumbs";
    box.dataset.testid = "thumbs";
    images.forEach(function (image, i) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "thumb-btn";
      button.setAttribute("aria-label", "Open image " + (i + 1) + " (" + (image.name || "image") + ")");
      const img = document.createElement("img");
      img.className = "thumb";
      img.dataset.testid = "thumb";
      img.src = image.url;
      img.alt = image.name || "image";
      button.append(img);
      button.onclick = function () { view(image); };
      box.append(button);
    });
    return box;
  }

  function view(image) {
    const dialog = document.getElementById("viewer");
    const img = document.getElementById("viewer-img");
    img.src = image.url;
    img.alt = image.name || "image";
    dialog.showModal();
  }

  /* A user message's content as OpenAI parts: the text part, then one image_url part per image. */
  function parts(text, images) {
    const out = [];
    if (text) out.push({ type: "text", text: text });
    images.forEach(function (image) { out.push({ type: "image_url", image_url: { url: image.url } }); });
    return out;
  }

  function clipboardImages(event) {
    const items = (event.clipboardData && event.clipboardData.items) || [];
    const files = [];
    for (const item of items) {
      if (item.kind === "file") {
        const file = item.getAsFile();
        if (isImage(file)) files.push(file);
      }
    }
    return files;
  }

  function hasFiles(event) {
    return !!event.dataTransfer && Array.prototype.indexOf.call(event.dataTransfer.types || [], "Files") >= 0;
  }

  /* options: {tray, file, attach, zone, input, composer, check: () => "" or a hint why images cannot go}. */
  function init(options) {
    opts = options;
    opts.attach.addEventListener("click", function () {
      const refusal = opts.check();
      if (refusal) { qd.say(refusal, "error"); return; }
      opts.file.click();
    });
    opts.file.addEventListener("change", function () {
      const files = Array.prototype.slice.call(opts.file.files || []);
      opts.file.value = "";
      add(files);
    });
    opts.input.addEventListener("paste", function (event) {
      const files = clipboardImages(event);
      if (!files.length) return; // plain text pastes as usual
      event.preventDefault();
      add(files);
    });
    let depth = 0; // dragenter/dragleave fire for every child crossed
    opts.zone.addEventListener("dragenter", function (event) {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth++;
      opts.composer.classList.add("dropping");
    });
    opts.zone.addEventListener("dragover", function (event) {
      if (!hasFiles(event)) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    opts.zone.addEventListener("dragleave", function () {
      depth = Math.max(0, depth - 1);
      if (!depth) opts.composer.classList.remove("dropping");
    });
    opts.zone.addEventListener("drop", function (event) {
      if (!hasFiles(event)) return;
      event.preventDefault();
      depth = 0;
      opts.composer.classList.remove("dropping");
      add(event.dataTransfer.files);
    });
  }

  qd.images = {
    init: init,
    add: add,
    parts: parts,
    thumbs: thumbs,
    count: function () { return pending.length; },
    take: function () { const out = pending; pending = []; render(); return out; },
    limits: { maxSide: MAX_SIDE, quality: QUALITY, maxImages: MAX_IMAGES },
  };
})();
