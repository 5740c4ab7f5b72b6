/* The studio page: the issue as a form, the email beside it, saving the same YAML file.
 *
 * Why it is built this way:
 * - Every value typed by a person (and every message from the server) reaches the page through
 *   textContent, value or setAttribute, never innerHTML: nothing typed can become markup.
 * - The form is built here from the JSON state (GET /api/state), and each control's `name` is the
 *   field path `check` prints (articles[2].image.alt, counting from 1), so a problem finds its
 *   field by name. Adding, moving or removing an article renumbers names, ids and labels.
 * - The preview is rebuilt on the server at most once per pause in typing, with never more than
 *   one request in flight; the visible view's iframe gets the new document, the others when
 *   their tab is opened. body[data-preview-seq] says which request the visible view shows.
 * - The file on disk is the truth: the page polls its version, reloads by itself when the form
 *   has no unsaved changes, and Save never overwrites an outside edit (the server answers 409).
 */
(function () {
  "use strict";

  var DEBOUNCE_MS = 60;
  var POLL_MS = 1000;
  var body = document.body;
  var SUBJECT_ADVICE = parseInt(body.dataset.subjectAdvice || "78", 10) || 78;
  var MARKDOWN_HINT = body.dataset.markdownHint || "";

  var TOP_FIELDS = [
    { name: "subject", label: "Subject", counter: true },
    { name: "preheader", label: "Preview text (shown after the subject in the inbox)" },
    { name: "date", label: "Date (YYYY-MM-DD)", short: true, placeholder: "2019-09-30" },
    { name: "number", label: "Issue number (optional)", short: true, inputmode: "numeric" },
    { name: "language", label: "Language code (optional, e.g. en, es, fr)", short: true },
    { name: "greeting", label: "Start with “Hello <first name>,”", kind: "checkbox" },
    { name: "draft", label: "Draft (a draft is not sent and not published in the archive)", kind: "checkbox" }
  ];
  var ARTICLE_FIELDS = [
    { path: "title", label: "Title" },
    { path: "summary", label: "Summary", kind: "markdown" },
    { path: "url", label: "Article address (https://…)", url: true },
    { path: "image.src", label: "Picture: a file kept with the issue (2019-10/market.jpg) or an https:// address", url: true, group: "image" },
    { path: "image.alt", label: "Picture description (alt text)", group: "image" },
    { path: "category", label: "Category (small label above the title, optional)" },
    { path: "location", label: "Place (optional)" },
    { path: "date", label: "Date of the event (YYYY-MM-DD, optional)", short: true },
    { path: "button", label: "Button text (optional, instead of “Read more”)" }
  ];

  // ---- small DOM helpers (text only) ---------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  /** An element with attributes (strings, set with setAttribute) and text or element children. */
  function h(tag, attrs) {
    var el = document.createElement(tag);
    var a = attrs || {};
    Object.keys(a).forEach(function (k) {
      if (a[k] === null || a[k] === undefined || a[k] === false) return;
      el.setAttribute(k, a[k] === true ? "" : String(a[k]));
    });
    for (var i = 2; i < arguments.length; i++) {
      var c = arguments[i];
      if (c === null || c === undefined) continue;
      el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return el;
  }

  function idFor(name) { return "f-" + name.replace(/[\[\].]+/g, "-").replace(/-+$/, ""); }
  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }
  function charCount(s) { return Array.from(s).length; }

  // ---- page state ----------------------------------------------------------------------------

  var form = $("issue-form");
  var textArea = $("f-text");
  var mode = "none";
  var version = null;
  var fileName = null;
  var clean = "";            // serialized content as loaded or last saved
  var newKeys = 0;
  var seq = 0;               // preview requests sent (0: the preview that came with the state)
  var latest = null;         // {preview, seq}
  var previewTimer = null;
  var previewInFlight = false;
  var previewAgain = false;
  var saving = false;
  var saveGen = 0;
  var sessionOver = false;
  var noticedVersion = null;
  var lastProblems = [];
  var removed = null;        // {node, index} for Undo
  var suggested = null;      // mode "none": the month to offer creating

  // ---- talking to the studio -----------------------------------------------------------------

  function sessionEnded() {
    sessionOver = true;
    $("session-ended").hidden = false;
  }

  /** GET (payload undefined) or POST JSON; resolves {status, data}; rejects when unreachable. */
  function api(path, payload) {
    var opts = { cache: "no-store", credentials: "same-origin" };
    if (payload !== undefined) {
      opts.method = "POST";
      opts.headers = { "Content-Type": "application/json" };
      opts.body = JSON.stringify(payload);
    }
    return fetch(path, opts).then(function (res) {
      $("offline").hidden = true;
      if (res.status === 403) {
        sessionEnded();
        throw new Error("session ended");
      }
      return res.json().catch(function () { return null; }).then(function (data) {
        return { status: res.status, data: data };
      });
    }, function (err) {
      $("offline").hidden = false;
      throw err;
    });
  }

  function say(message) {
    var s = $("status");
    // Clearing first makes screen readers announce the same message twice in a row too.
    s.textContent = "";
    window.setTimeout(function () { s.textContent = message; }, 30);
  }

  /** A picture picked on this computer is kept beside the issue (issues/<id>/), and its
   *  place goes into the article's picture field, as if typed there. */
  function uploadPicture(input) {
    var file = input.files && input.files[0];
    if (!file) return;
    var fs = input.closest("fieldset.article");
    var src = fs.querySelector('.field[data-path="image.src"] .control');
    var alt = fs.querySelector('.field[data-path="image.alt"] .control');
    say("Adding " + file.name + "…");
    fetch("/api/picture", {
      method: "POST", cache: "no-store", credentials: "same-origin", body: file,
      headers: { "Content-Type": "application/octet-stream", "X-File-Name": encodeURIComponent(file.name) }
    }).then(function (res) {
      if (res.status === 403) { sessionEnded(); throw new Error("session ended"); }
      return res.json().catch(function () { return null; }).then(function (data) {
        return { status: res.status, data: data };
      });
    }).then(function (r) {
      input.value = "";
      if (r.status !== 200 || !r.data || !r.data.src) { serverTrouble(r, "add the picture"); return; }
      src.value = r.data.src;
      src.dispatchEvent(new Event("input", { bubbles: true }));
      say(r.data.message + (alt.value ? "" : " Now describe it in “Picture description”."));
      if (!alt.value) alt.focus();
    }, function () { input.value = ""; });
  }

  function serverTrouble(r, doing) {
    var msg = r && r.data && r.data.message;
    say(msg || "The studio could not " + doing + " (error " + (r ? r.status : "?") +
      "). Your changes are still on this page; see the terminal where `newsletter studio` runs.");
  }

  // ---- building the form ---------------------------------------------------------------------

  /** Give a field block (and its control) the name `name`: id, label, messages, description. */
  function setFieldName(block, name) {
    var id = idFor(name);
    block.dataset.field = name;
    var control = block.querySelector(".control");
    control.name = name;
    control.id = id;
    block.querySelector("label").htmlFor = id;
    var counter = block.querySelector(".counter");
    if (counter) counter.id = "c-" + id;
    var hint = block.querySelector(".md-hint");
    if (hint) hint.id = "h-" + id;
    block.querySelector(".msgs").id = "p-" + id;
    var tools = block.querySelector(".md-tools");
    if (tools) tools.setAttribute("aria-label", "Formatting: " + describeField(name));
    describe(control, block);
  }

  /** aria-describedby = problems (if any), then the counter and the Markdown hint. */
  function describe(control, block) {
    var ids = [];
    var msgs = block.querySelector(":scope > .msgs");
    if (msgs && !msgs.hidden) ids.push(msgs.id);
    var counter = block.querySelector(".counter");
    if (counter) ids.push(counter.id);
    var hint = block.querySelector(".md-hint");
    if (hint) ids.push(hint.id);
    if (ids.length) control.setAttribute("aria-describedby", ids.join(" "));
    else control.removeAttribute("aria-describedby");
  }

  function fieldBlock(spec, name, value) {
    var block = h("div", { "class": "field" + (spec.short ? " short" : "") });
    var control;
    if (spec.kind === "checkbox") {
      block.className = "field check";
      control = h("input", { type: "checkbox", "class": "control" });
      control.checked = !!value;
      block.appendChild(control);
      block.appendChild(h("label", {}, spec.label));
    } else if (spec.kind === "markdown") {
      block.appendChild(h("label", {}, spec.label));
      block.appendChild(markdownTools());
      control = h("textarea", { "class": "control", rows: 5, spellcheck: "true" });
      control.value = value || "";
      block.appendChild(control);
      block.appendChild(h("p", { "class": "hint md-hint" }, MARKDOWN_HINT));
    } else {
      block.appendChild(h("label", {}, spec.label));
      control = h("input", {
        type: "text", "class": "control",
        inputmode: spec.url ? "url" : spec.inputmode,
        spellcheck: spec.url ? "false" : null,
        autocomplete: "off",
        placeholder: spec.placeholder
      });
      control.value = value || "";
      block.appendChild(control);
      if (spec.counter) block.appendChild(h("p", { "class": "hint counter" }));
    }
    block.appendChild(h("div", { "class": "msgs", hidden: true }));
    setFieldName(block, name);
    if (spec.counter) updateCounter(control);
    return block;
  }

  /** Bold, Italic, Link, List: one Tab stop (a toolbar), the arrow keys move between them. */
  function markdownTools() {
    var bar = h("div", { "class": "md-tools", role: "toolbar" });
    [["Bold", "bold", "Control+B"], ["Italic", "italic", "Control+I"], ["Link", "link"], ["List", "list"]]
      .forEach(function (b, i) {
        bar.appendChild(h("button", {
          type: "button", "data-md": b[1], tabindex: i === 0 ? "0" : "-1", "aria-keyshortcuts": b[2]
        }, b[0]));
      });
    bar.addEventListener("keydown", function (e) {
      var buttons = Array.prototype.slice.call(bar.querySelectorAll("button"));
      var i = buttons.indexOf(document.activeElement);
      var next = -1;
      if (e.key === "ArrowRight") next = (i + 1) % buttons.length;
      else if (e.key === "ArrowLeft") next = (i + buttons.length - 1) % buttons.length;
      else if (e.key === "Home") next = 0;
      else if (e.key === "End") next = buttons.length - 1;
      if (next < 0 || i < 0) return;
      e.preventDefault();
      buttons.forEach(function (b, k) { b.tabIndex = k === next ? 0 : -1; });
      buttons[next].focus();
    });
    return bar;
  }

  /** A Markdown box grows with its text (up to a limit set in CSS), so nothing hides in it. */
  function fitHeight(ta) {
    if (!ta.isConnected || ta.offsetParent === null) return;
    ta.style.height = "auto";
    ta.style.height = (ta.scrollHeight + 4) + "px";
  }

  function updateCounter(input) {
    var block = input.closest(".field");
    var counter = block && block.querySelector(".counter");
    if (!counter) return;
    var n = charCount(input.value);
    var text = n + " of " + SUBJECT_ADVICE + " characters";
    if (n > SUBJECT_ADVICE) {
      text += ": longer than advised; the end may be cut off in the inbox. Put the important words first or shorten it.";
    }
    counter.textContent = text;
    counter.classList.toggle("over", n > SUBJECT_ADVICE);
  }

  function getPath(obj, path) {
    return path.split(".").reduce(function (o, k) { return o ? o[k] : undefined; }, obj);
  }

  function articleBlock(article) {
    var fs = h("fieldset", { "class": "article", "data-key": article.key || ("new-" + (++newKeys)) });
    fs.appendChild(h("legend", {}, "Article"));
    fs.appendChild(h("div", { "class": "msgs group-msgs", hidden: true }));
    var imageSet = null;
    ARTICLE_FIELDS.forEach(function (spec) {
      var block = fieldBlock(spec, "articles[1]." + spec.path, getPath(article, spec.path));
      block.dataset.path = spec.path;
      if (spec.group === "image") {
        if (!imageSet) {
          imageSet = h("fieldset", { "class": "image-group", "data-path": "image" },
            h("legend", {}, "Picture (optional)"),
            h("div", { "class": "msgs group-msgs", hidden: true }));
          fs.appendChild(imageSet);
          imageSet.appendChild(h("div", { "class": "field picker" },
            h("label", {}, "Choose a picture from this computer ",
              h("input", { type: "file", "class": "picture-file",
                accept: "image/jpeg,image/png,image/gif,image/webp" }))));
        }
        imageSet.appendChild(block);
      } else {
        fs.appendChild(block);
      }
    });
    var actions = h("div", { "class": "article-actions" },
      h("button", { type: "button", "data-action": "up" }, "Move up"),
      h("button", { type: "button", "data-action": "down" }, "Move down"),
      h("button", { type: "button", "data-action": "remove", "class": "danger" }, "Remove"));
    fs.appendChild(actions);
    return fs;
  }

  function articleList() { return $("article-list"); }
  function articles() { return Array.prototype.slice.call(articleList().children); }

  /** Names, ids, legends and button names follow the articles' order (counting from 1). */
  function renumber() {
    var all = articles();
    all.forEach(function (fs, i) {
      var n = i + 1;
      var prefix = "articles[" + n + "]";
      fs.dataset.field = prefix;
      fs.id = "g-articles-" + n;
      fs.querySelector("legend").textContent = "Article " + n;
      var gm = fs.querySelector(":scope > .group-msgs");
      gm.id = "p-g-articles-" + n;
      describeGroup(fs);
      var img = fs.querySelector(".image-group");
      img.dataset.field = prefix + ".image";
      img.id = "g-articles-" + n + "-image";
      img.querySelector(":scope > .group-msgs").id = "p-g-articles-" + n + "-image";
      describeGroup(img);
      fs.querySelectorAll(".field[data-path]").forEach(function (block) {
        setFieldName(block, prefix + "." + block.dataset.path);
      });
      var up = fs.querySelector("[data-action=up]");
      var down = fs.querySelector("[data-action=down]");
      up.setAttribute("aria-label", "Move up article " + n);
      down.setAttribute("aria-label", "Move down article " + n);
      fs.querySelector("[data-action=remove]").setAttribute("aria-label", "Remove article " + n);
      up.disabled = n === 1;
      down.disabled = n === all.length;
    });
    $("article-count").textContent = all.length === 1 ? "1 article" : all.length + " articles";
  }

  function describeGroup(group) {
    var msgs = group.querySelector(":scope > .group-msgs");
    if (msgs && !msgs.hidden) group.setAttribute("aria-describedby", msgs.id);
    else group.removeAttribute("aria-describedby");
  }

  function describeField(name) {
    if (name === "articles") return "Articles";
    var g = /^articles\[(\d+)\](\.image)?$/.exec(name);
    if (g) return "Article " + g[1] + (g[2] ? ", Picture" : "");
    var m = /^articles\[(\d+)\]\.(.+)$/.exec(name);
    if (m) {
      var spec = ARTICLE_FIELDS.filter(function (s) { return s.path === m[2]; })[0];
      return "Article " + m[1] + ", " + (spec ? spec.label : m[2]);
    }
    if (name === "intro") return "Introduction";
    if (name === "closing") return "Closing";
    var top = TOP_FIELDS.filter(function (s) { return s.name === name; })[0];
    return top ? top.label : name;
  }

  function buildForm(data) {
    var focusName = document.activeElement && document.activeElement.name;
    var sel = focusName && typeof document.activeElement.selectionStart === "number"
      ? [document.activeElement.selectionStart, document.activeElement.selectionEnd] : null;
    form.textContent = "";

    var top = h("section", { "class": "card", "aria-labelledby": "top-heading" },
      h("h2", { id: "top-heading" }, "Top of the email"));
    TOP_FIELDS.forEach(function (spec) { top.appendChild(fieldBlock(spec, spec.name, data[spec.name])); });
    form.appendChild(top);

    var intro = h("section", { "class": "card", "aria-labelledby": "intro-heading" },
      h("h2", { id: "intro-heading" }, "Introduction"));
    intro.appendChild(fieldBlock({ kind: "markdown", label: "Introduction (optional)" }, "intro", data.intro));
    form.appendChild(intro);

    var arts = h("section", { "class": "card articles", "aria-labelledby": "articles-heading", "data-field": "articles" },
      h("h2", { id: "articles-heading" }, "Articles ", h("span", { id: "article-count", "class": "count" })),
      h("div", { "class": "msgs group-msgs", id: "p-g-articles", hidden: true }),
      h("div", { id: "article-list" }),
      h("p", {}, h("button", { type: "button", id: "add-article" }, "Add article")));
    form.appendChild(arts);
    (data.articles || []).forEach(function (a) { articleList().appendChild(articleBlock(a)); });

    var closing = h("section", { "class": "card", "aria-labelledby": "closing-heading" },
      h("h2", { id: "closing-heading" }, "Closing"));
    closing.appendChild(fieldBlock({ kind: "markdown", label: "Closing (optional)" }, "closing", data.closing));
    form.appendChild(closing);
    renumber();
    form.hidden = false;
    form.querySelectorAll("textarea").forEach(fitHeight);

    if (focusName && form.elements[focusName] && form.elements[focusName].focus) {
      var el = form.elements[focusName];
      el.focus();
      if (sel && typeof el.setSelectionRange === "function") {
        try { el.setSelectionRange(Math.min(sel[0], el.value.length), Math.min(sel[1], el.value.length)); } catch (e) { /* not a text control */ }
      }
    }
  }

  function collectForm() {
    var el = form.elements;
    var out = {};
    TOP_FIELDS.forEach(function (spec) {
      out[spec.name] = spec.kind === "checkbox" ? el[spec.name].checked : el[spec.name].value;
    });
    out.intro = el.intro.value;
    out.closing = el.closing.value;
    out.articles = articles().map(function (fs) {
      var a = { key: fs.dataset.key, image: {} };
      fs.querySelectorAll(".field[data-path]").forEach(function (block) {
        var v = block.querySelector(".control").value;
        var parts = block.dataset.path.split(".");
        if (parts.length === 2) a[parts[0]][parts[1]] = v;
        else a[parts[0]] = v;
      });
      return a;
    });
    return out;
  }

  function current() { return mode === "text" ? textArea.value : mode === "form" ? JSON.stringify(collectForm()) : ""; }
  function isDirty() { return mode !== "none" && current() !== clean; }

  function updateDirty() {
    var dirty = isDirty();
    $("dirty").hidden = !dirty;
    var subject = mode === "form" ? form.elements.subject.value : "";
    document.title = (dirty ? "• " : "") + (subject || fileName || "New issue") + " · Studio";
  }

  // ---- problems ------------------------------------------------------------------------------

  var FIELD_BY_LINE = /:(\d+)(?::\d+)?$/;

  function lineOf(p) {
    if (typeof p.line === "number") return p.line;
    var m = FIELD_BY_LINE.exec(p.where || "");
    return m ? parseInt(m[1], 10) : null;
  }

  /** The element showing problems for `field`: a control's block, or the closest group. */
  function placeFor(field) {
    if (!field || mode !== "form") return null;
    var path = field;
    while (path) {
      var found = form.querySelector('[data-field="' + CSS.escape(path) + '"]');
      if (found) return found;
      var cut = Math.max(path.lastIndexOf("."), path.lastIndexOf("["));
      path = cut > 0 ? path.slice(0, cut) : "";
    }
    return null;
  }

  function problemText(p) {
    // As `check` prints it: "message (hint)".
    return (p.severity === "error" ? "Error: " : "Warning: ") + p.message + (p.hint ? " (" + p.hint + ")" : "");
  }

  function clearProblems() {
    document.querySelectorAll(".msgs").forEach(function (m) {
      m.textContent = "";
      m.hidden = true;
    });
    document.querySelectorAll("[aria-invalid]").forEach(function (c) { c.removeAttribute("aria-invalid"); });
    document.querySelectorAll(".has-error, .has-warning").forEach(function (b) {
      b.classList.remove("has-error", "has-warning");
    });
    document.querySelectorAll(".field").forEach(function (b) {
      var c = b.querySelector(":scope > .control");
      if (c) describe(c, b);
    });
    document.querySelectorAll("[data-field]:not(.field)").forEach(describeGroup);
  }

  function applyProblems(problems, counts) {
    lastProblems = problems || [];
    clearProblems();
    var list = $("summary-list");
    list.textContent = "";
    lastProblems.forEach(function (p) {
      var place = mode === "text" ? $("f-text").closest(".field") : placeFor(p.field);
      var target = null;
      if (place) {
        var msgs = place.querySelector(":scope > .msgs");
        msgs.appendChild(h("p", { "class": p.severity }, problemText(p)));
        msgs.hidden = false;
        place.classList.add(p.severity === "error" ? "has-error" : "has-warning");
        var control = place.querySelector(":scope > .control");
        if (control) {
          if (p.severity === "error") control.setAttribute("aria-invalid", "true");
          describe(control, place);
          target = control;
        } else {
          describeGroup(place);
          target = place;
        }
      }
      list.appendChild(summaryItem(p, target));
    });
    var errors = counts ? counts.errors : lastProblems.filter(function (p) { return p.severity === "error"; }).length;
    var warnings = counts ? counts.warnings : lastProblems.length - errors;
    var heading = $("summary-heading");
    var summary = $("summary");
    if (!errors && !warnings) heading.textContent = "No problems found";
    else if (errors && warnings) heading.textContent = plural(errors, "error") + ", " + plural(warnings, "warning");
    else heading.textContent = errors ? plural(errors, "error") : plural(warnings, "warning");
    summary.className = "summary" + (errors ? " bad" : warnings ? " warn" : " ok");
  }

  function summaryItem(p, target) {
    var line = lineOf(p);
    var text;
    if (mode === "form" && p.field) {
      // "Error in Article 2, Title: is required (…)": where first, then check's words.
      text = (p.severity === "error" ? "Error in " : "Warning in ") + describeField(p.field) + ": " +
        p.message + (p.hint ? " (" + p.hint + ")" : "");
    } else {
      text = (line ? "Line " + line + ": " : "") + problemText(p);
    }
    var li = h("li", { "class": p.severity });
    if (mode === "text" && line) {
      var a = h("a", { href: "#f-text" }, text);
      a.addEventListener("click", function (e) {
        e.preventDefault();
        goToLine(line);
      });
      li.appendChild(a);
    } else if (target) {
      var focusable = target.matches("input, textarea") ? target : target.querySelector("input, textarea, button");
      var link = h("a", { href: "#" + (focusable ? focusable.id : target.id) }, text);
      link.addEventListener("click", function (e) {
        e.preventDefault();
        var el = focusable || target;
        el.scrollIntoView({ block: "center" });
        el.focus();
      });
      li.appendChild(link);
    } else {
      li.appendChild(h("span", {}, text));
    }
    return li;
  }

  function goToLine(line) {
    var lines = textArea.value.split("\n");
    var start = 0;
    for (var i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
    var end = start + (lines[line - 1] || "").length;
    textArea.focus();
    textArea.setSelectionRange(start, end);
    var lh = parseFloat(getComputedStyle(textArea).lineHeight) || 18;
    textArea.scrollTop = Math.max(0, (line - 5) * lh);
  }

  // ---- preview -------------------------------------------------------------------------------

  var VIEWS = {
    desktop: { tab: $("tab-desktop"), panel: $("panel-desktop") },
    phone: { tab: $("tab-phone"), panel: $("panel-phone") },
    dark: { tab: $("tab-dark"), panel: $("panel-dark") },
    text: { tab: $("tab-text"), panel: $("panel-text") }
  };
  var visible = "desktop";

  Object.keys(VIEWS).forEach(function (k) {
    var iframe = VIEWS[k].panel.querySelector("iframe");
    VIEWS[k].shown = -1;
    if (!iframe) return;
    iframe.addEventListener("load", function () {
      var y = parseFloat(iframe.dataset.scrollY || "0");
      if (y > 0) {
        try { iframe.contentWindow.scrollTo(0, y); } catch (e) { /* not readable: stays on top */ }
      }
      var n = iframe.dataset.seq;
      if (n !== undefined && k === visible) body.dataset.previewSeq = n;
    });
  });

  function renderView(k) {
    var v = VIEWS[k];
    if (!latest || v.shown === latest.seq) {
      if (latest && k === visible) body.dataset.previewSeq = String(v.shown);
      return;
    }
    v.shown = latest.seq;
    var p = latest.preview;
    if (k === "text") {
      $("plain-text").textContent = p.text;
      body.dataset.previewSeq = String(latest.seq);
      return;
    }
    writeFrame(k, v.panel.querySelector("iframe"), k === "dark" ? p.dark_html : p.html, latest.seq);
  }

  /** Show `html` in a preview frame, where the reader was in the previous version.
   *
   * The frames are sandboxed without allow-scripts (nothing in them ever runs) but with
   * allow-same-origin, so the page can write the new email into the frame's document: no
   * navigation (a few ms instead of ~60 for a srcdoc load) and the scroll position is kept.
   * A frame the page cannot reach gets the email as srcdoc (the load handler finishes). */
  function writeFrame(k, iframe, html, n) {
    var doc = null;
    var y = 0;
    try {
      doc = iframe.contentDocument;
      y = iframe.contentWindow.scrollY || 0;
    } catch (e) {
      doc = null;
    }
    if (!doc) {
      iframe.dataset.seq = String(n);
      iframe.dataset.scrollY = String(y);
      iframe.srcdoc = html;
      return;
    }
    doc.open();
    doc.write(html);
    doc.close();
    if (y > 0) iframe.contentWindow.scrollTo(0, y);
    void (doc.body && doc.body.offsetHeight);  // laid out: the new email is what shows next
    if (k === visible) body.dataset.previewSeq = String(n);
  }

  /** Going to another article's fields brings that article into view in the preview (found by
   * its title among the email's headings); typing never moves the preview. */
  function scrollPreviewTo(fs) {
    var title = fs.querySelector('[data-path="title"] .control').value.trim();
    var iframe = VIEWS[visible].panel.querySelector("iframe");
    if (!title || !iframe) return;
    try {
      var doc = iframe.contentDocument;
      var win = iframe.contentWindow;
      var headings = doc.querySelectorAll("h1, h2, h3, h4");
      for (var i = 0; i < headings.length; i++) {
        if (headings[i].textContent.trim() === title) {
          win.scrollTo(0, Math.max(0, headings[i].getBoundingClientRect().top + win.scrollY - 24));
          return;
        }
      }
    } catch (e) { /* a frame the page cannot read stays where it is */ }
  }

  function showPreview(preview, n) {
    var stale = !preview;
    $("views").classList.toggle("stale", stale && !!latest);
    $("stale-note").hidden = !(stale && latest);
    $("preview-empty").hidden = !(stale && !latest);
    $("views").hidden = stale && !latest;
    if (stale) return;
    latest = { preview: preview, seq: n };
    $("preview-subject").textContent = preview.subject ? "Subject: " + preview.subject : "";
    renderView(visible);
  }

  function selectTab(k, focus) {
    visible = k;
    Object.keys(VIEWS).forEach(function (other) {
      var on = other === k;
      VIEWS[other].tab.setAttribute("aria-selected", on ? "true" : "false");
      VIEWS[other].tab.tabIndex = on ? 0 : -1;
      VIEWS[other].panel.hidden = !on;
    });
    if (focus) VIEWS[k].tab.focus();
    renderView(k);
  }

  var ORDER = ["desktop", "phone", "dark", "text"];
  ORDER.forEach(function (k) {
    VIEWS[k].tab.addEventListener("click", function () { selectTab(k, false); });
    VIEWS[k].tab.addEventListener("keydown", function (e) {
      var i = ORDER.indexOf(k);
      var next = null;
      if (e.key === "ArrowRight") next = ORDER[(i + 1) % ORDER.length];
      else if (e.key === "ArrowLeft") next = ORDER[(i + ORDER.length - 1) % ORDER.length];
      else if (e.key === "Home") next = ORDER[0];
      else if (e.key === "End") next = ORDER[ORDER.length - 1];
      if (next) {
        e.preventDefault();
        selectTab(next, true);
      }
    });
  });

  function payload() {
    return mode === "text" ? { text: textArea.value } : { form: collectForm() };
  }

  /** body[data-preview-busy] while a preview is due or on its way (tests wait for it to go). */
  function markBusy() {
    if (previewTimer !== null || previewInFlight || previewAgain) body.dataset.previewBusy = "1";
    else delete body.dataset.previewBusy;
  }

  function schedulePreview() {
    if (mode === "none") return;
    window.clearTimeout(previewTimer);
    previewTimer = window.setTimeout(requestPreview, DEBOUNCE_MS);
    markBusy();
  }

  function requestPreview() {
    previewTimer = null;
    if (sessionOver) {
      markBusy();
      return;
    }
    if (previewInFlight) {
      previewAgain = true;
      return;
    }
    previewInFlight = true;
    var n = ++seq;
    var sentMode = mode;
    api("/api/preview", payload()).then(function (r) {
      if (sentMode !== mode || (latest && n < latest.seq)) return;
      if (r.status !== 200 || !r.data) {
        serverTrouble(r, "update the preview");
        return;
      }
      applyProblems(r.data.problems, r.data.counts);
      showPreview(r.data.preview, n);
    }).catch(function () { /* offline banner or session message already shown */ }).then(function () {
      previewInFlight = false;
      if (previewAgain) {
        previewAgain = false;
        requestPreview();
      }
      markBusy();
    });
  }

  // ---- loading state -------------------------------------------------------------------------

  function showPane(m) {
    form.hidden = m !== "form";
    $("text-pane").hidden = m !== "text";
    $("none-pane").hidden = m !== "none";
    $("test-send").hidden = m === "none";
    $("summary").hidden = m === "none";
    $("save").hidden = m === "none";
    $("preview").hidden = m === "none";
  }

  function monthName(ym) {
    var m = /^(\d{4})-(\d{2})$/.exec(ym || "");
    if (!m) return ym || "";
    var d = new Date(Date.UTC(+m[1], +m[2] - 1, 1));
    return d.toLocaleString(document.documentElement.lang || "en", { month: "long", year: "numeric", timeZone: "UTC" });
  }

  function applyState(s) {
    mode = s.mode;
    version = s.version;
    fileName = s.file;
    suggested = s.suggested || null;
    $("file-name").textContent = s.file || "";
    $("changed-on-disk").hidden = true;
    $("conflict").hidden = true;
    $("undo-bar").hidden = true;
    removed = null;
    noticedVersion = null;
    showPane(mode);
    if (mode === "form") {
      buildForm(s.form);
    } else if (mode === "text") {
      textArea.value = s.text || "";
    } else {
      $("create").textContent = "Create the issue for " + monthName(s.suggested);
    }
    clean = current();
    applyProblems(s.problems, s.counts);
    if (mode !== "none") showPreview(s.preview, seq === 0 && !latest ? 0 : ++seq);
    updateDirty();
  }

  function reloadState(message) {
    return api("/api/state").then(function (r) {
      if (r.status !== 200 || !r.data) {
        serverTrouble(r, "read the file");
        return;
      }
      applyState(r.data);
      if (message) say(message);
    });
  }

  // ---- saving --------------------------------------------------------------------------------

  function save(resolve) {
    if (mode === "none" || saving || sessionOver) return;
    saving = true;
    saveGen++;
    var sent = current();
    var data = payload();
    data.version = version;
    if (resolve) data.resolve = resolve;
    $("save").disabled = true;
    say("Saving…");
    api("/api/save", data).then(function (r) {
      if (r.status === 409 && r.data) {
        $("conflict-message").textContent = r.data.message;
        $("conflict").hidden = false;
        $("changed-on-disk").hidden = true;
        say("Not saved: the file was changed somewhere else.");
        $("keep-both").focus();
        return null;
      }
      if (r.status !== 200 || !r.data) {
        serverTrouble(r, "save");
        return null;
      }
      $("conflict").hidden = true;
      if (r.data.reload || mode === "text") {
        return reloadState().then(function () { say(r.data.message); });
      }
      version = r.data.version;
      clean = sent;
      noticedVersion = null;
      $("changed-on-disk").hidden = true;
      if (r.data.problems) applyProblems(r.data.problems, r.data.counts);
      updateDirty();
      say(r.data.message);
      return null;
    }).catch(function () {
      say("Not saved: the studio is not answering. Your changes are still on this page.");
    }).then(function () {
      saving = false;
      saveGen++;
      $("save").disabled = false;
    });
  }

  // ---- watching the file ---------------------------------------------------------------------

  function poll() {
    if (sessionOver) return;
    var gen = saveGen;
    api("/api/version").then(function (r) {
      if (saving || gen !== saveGen || r.status !== 200 || !r.data) return null;
      var v = r.data.version === undefined ? null : r.data.version;
      if (v === version || mode === "none") return null;
      if (!isDirty()) return reloadState("Reloaded: the file changed on disk.");
      if (noticedVersion !== v) {
        noticedVersion = v;
        $("changed-on-disk").hidden = false;
      }
      return null;
    }).catch(function () { /* banner shown by api() */ }).then(function () {
      if (!sessionOver) window.setTimeout(poll, POLL_MS);
    });
  }

  // ---- articles: add, move, remove -----------------------------------------------------------

  function emptyArticle() {
    return { key: "new-" + (++newKeys), title: "", summary: "", url: "", image: { src: "", alt: "" },
      category: "", location: "", date: "", button: "" };
  }

  function changed() {
    updateDirty();
    schedulePreview();
  }

  function addArticle() {
    var fs = articleBlock(emptyArticle());
    articleList().appendChild(fs);
    renumber();
    fs.querySelector(".control").focus();
    say("Added article " + articles().length + ".");
    changed();
  }

  function moveArticle(fs, delta, action) {
    var all = articles();
    var i = all.indexOf(fs);
    var j = i + delta;
    if (j < 0 || j >= all.length) return;
    if (delta < 0) articleList().insertBefore(fs, all[j]);
    else articleList().insertBefore(fs, all[j].nextSibling);
    renumber();
    var btn = fs.querySelector("[data-action=" + action + "]");
    if (btn.disabled) btn = fs.querySelector("[data-action=" + (action === "up" ? "down" : "up") + "]");
    btn.focus();
    say("Moved to article " + (j + 1) + ".");
    changed();
  }

  function removeArticle(fs) {
    var all = articles();
    var i = all.indexOf(fs);
    var title = fs.querySelector('[data-path="title"] .control').value;
    fs.remove();
    removed = { node: fs, index: i };
    renumber();
    var what = "article " + (i + 1) + (title ? " (“" + title + "”)" : "");
    $("undo-message").textContent = "Removed " + what + ".";
    $("undo").setAttribute("aria-label", "Undo removing " + what);
    $("undo-bar").hidden = false;
    say("Removed " + what + ".");
    $("undo").focus();
    changed();
  }

  function undoRemove() {
    if (!removed) return;
    var all = articles();
    articleList().insertBefore(removed.node, all[removed.index] || null);
    var node = removed.node;
    removed = null;
    $("undo-bar").hidden = true;
    renumber();
    node.querySelector(".control").focus();
    say("Put back article " + (articles().indexOf(node) + 1) + ".");
    changed();
  }

  // ---- Markdown toolbar ----------------------------------------------------------------------

  function insert(ta, text, selStart, selEnd) {
    var start = ta.selectionStart;
    ta.focus();
    // execCommand keeps the browser's undo history; setRangeText is the fallback.
    var ok = false;
    try { ok = document.execCommand("insertText", false, text); } catch (e) { ok = false; }
    if (!ok) {
      ta.setRangeText(text, ta.selectionStart, ta.selectionEnd, "end");
      ta.dispatchEvent(new Event("input", { bubbles: true }));
    }
    ta.setSelectionRange(start + selStart, start + selEnd);
  }

  function markdown(ta, how) {
    var s = ta.selectionStart;
    var e = ta.selectionEnd;
    var sel = ta.value.slice(s, e);
    if (how === "bold" || how === "italic") {
      var mark = how === "bold" ? "**" : "*";
      var inner = sel || (how === "bold" ? "bold text" : "italic text");
      insert(ta, mark + inner + mark, mark.length, mark.length + inner.length);
    } else if (how === "link") {
      if (sel && /^https?:\/\//.test(sel)) {
        insert(ta, "[link text](" + sel + ")", 1, 10);
      } else {
        var label = sel || "link text";
        var text = "[" + label + "](https://)";
        if (sel) insert(ta, text, label.length + 3, label.length + 11);
        else insert(ta, text, 1, 1 + label.length);
      }
    } else if (how === "list") {
      var lineStart = s > 0 ? ta.value.lastIndexOf("\n", s - 1) + 1 : 0;
      var endPos = e > s && ta.value[e - 1] === "\n" ? e - 1 : e;
      var lineEnd = ta.value.indexOf("\n", endPos);
      if (lineEnd < 0) lineEnd = ta.value.length;
      ta.setSelectionRange(lineStart, lineEnd);
      var lines = ta.value.slice(lineStart, lineEnd).split("\n").map(function (l) {
        return /^\s*[-*] /.test(l) ? l : "- " + l;
      });
      var joined = lines.join("\n");
      insert(ta, joined, joined.length, joined.length);
    }
  }

  // ---- events --------------------------------------------------------------------------------

  form.addEventListener("submit", function (e) { e.preventDefault(); });
  var focusedArticle = null;
  form.addEventListener("focusin", function (e) {
    var fs = e.target.closest("fieldset.article");
    if (fs && fs !== focusedArticle) scrollPreviewTo(fs);
    focusedArticle = fs;
  });
  form.addEventListener("input", function (e) {
    if (e.target.name === "subject") updateCounter(e.target);
    if (e.target.tagName === "TEXTAREA") fitHeight(e.target);
    changed();
  });
  form.addEventListener("change", function (e) {
    if (e.target.type === "checkbox") changed();
    if (e.target.classList.contains("picture-file")) uploadPicture(e.target);
  });
  form.addEventListener("click", function (e) {
    var btn = e.target.closest("button");
    if (!btn || !form.contains(btn)) return;
    if (btn.id === "add-article") { addArticle(); return; }
    var md = btn.dataset.md;
    if (md) {
      var ta = btn.closest(".field").querySelector("textarea");
      markdown(ta, md);
      return;
    }
    var fs = btn.closest("fieldset.article");
    if (!fs) return;
    if (btn.dataset.action === "up") moveArticle(fs, -1, "up");
    else if (btn.dataset.action === "down") moveArticle(fs, 1, "down");
    else if (btn.dataset.action === "remove") removeArticle(fs);
  });
  form.addEventListener("keydown", function (e) {
    if (e.target.tagName !== "TEXTAREA" || !(e.ctrlKey || e.metaKey) || e.altKey) return;
    var k = e.key.toLowerCase();
    if (k === "b" || k === "i") {
      e.preventDefault();
      markdown(e.target, k === "b" ? "bold" : "italic");
    }
  });
  textArea.addEventListener("input", changed);

  document.addEventListener("keydown", function (e) {
    if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && e.key.toLowerCase() === "s") {
      e.preventDefault();
      save(null);
    }
  });
  $("save").addEventListener("click", function () { save(null); });
  $("keep-both").addEventListener("click", function () { save("keep-both"); });
  $("reload-from-disk").addEventListener("click", function () {
    reloadState("Reloaded " + (fileName || "the file") + " from disk; the changes made on this page were discarded.");
  });
  $("undo").addEventListener("click", undoRemove);
  $("create").addEventListener("click", function () {
    var btn = $("create");
    btn.disabled = true;
    api("/api/new", { month: suggested }).then(function (r) {
      if (r.status === 200) {
        window.location.reload();
        return;
      }
      btn.disabled = false;
      serverTrouble(r, "create the issue");
    }, function () { btn.disabled = false; });
  });
  $("send-test").addEventListener("click", function () {
    var input = $("test-to");
    var out = $("test-result");
    var btn = $("send-test");
    if (!input.value.trim()) {
      out.className = "result bad";
      out.textContent = "Type at least one email address in “Send a test to”.";
      input.focus();
      return;
    }
    btn.disabled = true;
    out.className = "result";
    out.textContent = "Sending…";
    api("/api/test", {
      addresses: input.value,
      version: version,
      form: mode === "form" ? collectForm() : null,
      text: mode === "text" ? textArea.value : null
    }).then(function (r) {
      var ok = r.status === 200 && r.data && r.data.ok;
      out.className = "result " + (ok ? "ok" : "bad");
      out.textContent = (r.data && r.data.message) ||
        "The test could not be sent (error " + r.status + "); see the terminal where `newsletter studio` runs.";
    }, function () {
      out.className = "result bad";
      out.textContent = "Not sent: the studio is not answering.";
    }).then(function () { btn.disabled = false; });
  });
  $("test-to").addEventListener("keydown", function (e) {
    if (e.key === "Enter") {
      e.preventDefault();
      $("send-test").click();
    }
  });
  window.addEventListener("beforeunload", function (e) {
    if (isDirty() && !sessionOver) {
      e.preventDefault();
      e.returnValue = "";
    }
  });

  // ---- start ---------------------------------------------------------------------------------

  var state;
  try {
    state = JSON.parse($("studio-state").textContent);
  } catch (e) {
    state = null;
  }
  function start(s) {
    state = s;
    applyState(s);
    body.dataset.ready = "1";  // the form (or text) is in place: tests start here
    window.setTimeout(poll, POLL_MS);
  }
  if (state && state.mode) start(state);
  else {
    api("/api/state").then(function (r) {
      if (r.status === 200 && r.data) start(r.data);
      else serverTrouble(r, "read the file");
    });
  }
})();
