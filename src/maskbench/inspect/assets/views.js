/* maskbench attention views: head view, model view, neuron view.
 *
 * Reads the JSON payload from the application/json script block "mb-data", decodes the quantised
 * arrays (base64, optionally zlib-deflated) and draws everything with the DOM (text through
 * textContent only: tokens are data, never markup) and <canvas>. No network, no libraries.
 */
(function () {
  "use strict";

  var ROW = 18;          // head view row height (px)
  var NROW = 14;         // neuron view row height (px)
  var LINE_W = 220;      // head view canvas width (px)
  var ALPHA_LEVELS = 16; // lines are batched by opacity level: one stroke per (head, level)
  var MIN_LINE = 8;      // skip lines with weight < 8/255 (~0.03: invisible on white anyway)

  // heatmap opacity = sqrt(weight): small but real weights stay visible in 50-pixel thumbnails
  var SQRT = new Uint8Array(256);
  for (var v = 0; v < 256; v++) SQRT[v] = Math.round(Math.sqrt(v / 255) * 255);

  var PALETTE = [
    [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
    [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207], [57, 59, 121], [99, 121, 57],
    [140, 109, 49], [132, 60, 57], [123, 65, 115], [49, 130, 189], [230, 85, 13], [49, 163, 84],
    [117, 107, 177], [99, 99, 99]
  ];

  function headColor(h) {
    if (h < PALETTE.length) return PALETTE[h];
    var hue = (h * 137.508) % 360, s = 0.65, l = 0.45;           // golden-angle hues beyond the palette
    var c = (1 - Math.abs(2 * l - 1)) * s, x = c * (1 - Math.abs((hue / 60) % 2 - 1)), m = l - c / 2;
    var rgb = hue < 60 ? [c, x, 0] : hue < 120 ? [x, c, 0] : hue < 180 ? [0, c, x]
      : hue < 240 ? [0, x, c] : hue < 300 ? [x, 0, c] : [c, 0, x];
    return rgb.map(function (v) { return Math.round((v + m) * 255); });
  }

  function css(rgb, alpha) {
    return "rgba(" + rgb[0] + "," + rgb[1] + "," + rgb[2] + "," + (alpha === undefined ? 1 : alpha) + ")";
  }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  function option(select, value, label) {
    var o = el("option", null, label);
    o.value = String(value);
    select.appendChild(o);
    return o;
  }

  function range(n) {
    var out = new Array(n);
    for (var i = 0; i < n; i++) out[i] = i;
    return out;
  }

  /* ---------- decoding ---------- */

  function b64bytes(text) {
    var bin = atob(text), out = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function inflate(bytes) {
    if (typeof DecompressionStream === "undefined") {
      return Promise.reject(new Error("this browser lacks DecompressionStream; re-render with compress=False"));
    }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Response(stream).arrayBuffer().then(function (buf) { return new Uint8Array(buf); });
  }

  function decodeArray(spec, expected) {
    var bytes = b64bytes(spec.data);
    var ready = spec.compression === "deflate" ? inflate(bytes) : Promise.resolve(bytes);
    return ready.then(function (raw) {
      var out;
      if (spec.dtype === "uint8") out = raw;
      else if (spec.dtype === "int8") out = new Int8Array(raw.buffer, raw.byteOffset, raw.length);
      else if (spec.dtype === "float32") out = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.length));
      else throw new Error("unknown dtype " + spec.dtype);
      if (out.length !== expected) throw new Error("array has " + out.length + " values, expected " + expected);
      return out;
    });
  }

  function decodeSet(s) {
    var n = s.layers * s.heads;
    var lq = s.queryTokens.length, lk = s.keyTokens.length;
    var none = Promise.resolve(null);
    var jobs = [
      decodeArray(s.attention, n * lq * lk),
      s.queries ? decodeArray(s.queries.values, n * lq * s.headDim) : none,
      s.queries ? decodeArray(s.queries.scales, n * lq) : none,
      s.queries ? decodeArray(s.keys.values, n * lk * s.headDim) : none,
      s.queries ? decodeArray(s.keys.scales, n * lk) : none,
      s.allowed ? decodeArray(s.allowed, lq * lk) : none,
      s.bias ? decodeArray(s.bias, s.heads * lq * lk) : none
    ];
    return Promise.all(jobs).then(function (arrays) {
      s.A = arrays[0];
      s.Q = arrays[1]; s.Qs = arrays[2]; s.K = arrays[3]; s.Ks = arrays[4];
      s.M = arrays[5]; s.B = arrays[6];
      s.Lq = s.queryTokens.length;
      s.Lk = s.keyTokens.length;
      return s;
    });
  }

  /* ---------- model of the page ---------- */

  function App(root, payload, sets) {
    this.root = root;
    this.payload = payload;
    this.sets = sets;
    this.views = payload.views;
    this.state = { set: 0, layer: 0, heads: null, filter: "all", hover: null, neuronHead: 0, neuronQuery: 0 };
    this.state.heads = new Set(range(sets[0].heads));
    this.build();
  }

  App.prototype.set = function () { return this.sets[this.state.set]; };

  App.prototype.att = function (s, l, h) {
    var size = s.Lq * s.Lk, offset = (l * s.heads + h) * size;
    return s.A.subarray(offset, offset + size);
  };

  App.prototype.hasPair = function (s) {
    return s.querySegments.indexOf(1) >= 0 || s.keySegments.indexOf(1) >= 0;
  };

  /* The sentence filter: "ab" keeps sentence-A tokens on the left and sentence-B tokens on the right. */
  App.prototype.filtered = function (segments, side) {
    var f = this.state.filter, idx = [];
    if (f === "all") return range(segments.length);
    var want = f[side === "q" ? 0 : 1] === "a" ? 0 : 1;
    for (var i = 0; i < segments.length; i++) if (segments[i] === want) idx.push(i);
    return idx;
  };

  App.prototype.queryIndex = function (s) { return this.filtered(s.querySegments, "q"); };

  App.prototype.keyIndex = function (s) { return this.filtered(s.keySegments, "k"); };

  App.prototype.build = function () {
    var self = this, root = this.root, payload = this.payload;
    root.textContent = "";
    var header = el("header", "mb-header");
    header.appendChild(el("h1", "mb-title", payload.title || "Attention"));
    if (payload.subtitle) header.appendChild(el("p", "mb-subtitle", payload.subtitle));
    root.appendChild(header);

    var controls = el("div", "mb-controls");
    root.appendChild(controls);

    if (this.sets.length > 1) {
      var setLabel = el("label", null, "Attention ");
      var setSelect = el("select", "mb-set-select");
      this.sets.forEach(function (s, i) { option(setSelect, i, s.label || s.name); });
      setSelect.addEventListener("change", function () { self.selectSet(+setSelect.value); });
      setLabel.appendChild(setSelect);
      controls.appendChild(setLabel);
      this.setSelect = setSelect;
    }

    var layerLabel = el("label", null, "Layer ");
    this.layerSelect = el("select", "mb-layer-select");
    layerLabel.appendChild(this.layerSelect);
    this.layerSelect.addEventListener("change", function () { self.selectLayer(+self.layerSelect.value); });
    controls.appendChild(layerLabel);

    this.filterLabel = el("label", null, "Sentences ");
    this.filterSelect = el("select", "mb-filter-select");
    [["all", "All"], ["aa", "A \u2192 A"], ["ab", "A \u2192 B"], ["ba", "B \u2192 A"], ["bb", "B \u2192 B"]]
      .forEach(function (p) { option(self.filterSelect, p[0], p[1]); });
    this.filterSelect.addEventListener("change", function () {
      self.state.filter = self.filterSelect.value;
      self.state.hover = null;
      self.drawHeadView();
    });
    this.filterLabel.appendChild(this.filterSelect);
    controls.appendChild(this.filterLabel);

    if (this.views.indexOf("head") >= 0) this.buildHeadView();
    if (this.views.indexOf("model") >= 0) this.buildModelView();
    if (this.views.indexOf("neuron") >= 0) this.buildNeuronView();
    this.selectSet(0);
  };

  App.prototype.selectSet = function (index) {
    var s = this.sets[index], self = this;
    this.state.set = index;
    this.state.layer = 0;
    this.state.heads = new Set(range(s.heads));
    this.state.hover = null;
    this.state.neuronHead = 0;
    this.state.neuronQuery = 0;
    this.state.filter = "all";
    this.filterSelect.value = "all";
    this.filterLabel.hidden = !this.hasPair(s) || !this.headView;
    this.layerSelect.textContent = "";
    range(s.layers).forEach(function (l) { option(self.layerSelect, l, String(l)); });
    this.layerSelect.value = "0";
    if (this.headView) this.buildSwatches();
    if (this.modelView) this.buildModelGrid();
    if (this.neuronView) this.buildNeuronControls();
    this.refresh();
  };

  App.prototype.selectLayer = function (layer) {
    this.state.layer = layer;
    this.layerSelect.value = String(layer);
    this.refresh();
  };

  App.prototype.refresh = function () {
    if (this.headView) { this.updateSwatches(); this.drawHeadView(); }
    if (this.modelView) this.markThumbnails();
    if (this.neuronView) this.drawNeuronView();
    this.root.dataset.layer = String(this.state.layer);
    this.root.dataset.heads = Array.from(this.state.heads).sort(function (a, b) { return a - b; }).join(",");
  };

  /* ---------- head view ---------- */

  App.prototype.buildHeadView = function () {
    var self = this;
    var section = el("section", "mb-view mb-head-view");
    section.appendChild(el("h2", null, "Head view"));
    section.appendChild(el("p", "mb-help",
      "Lines join each token (left) to the tokens it attends to (right); opacity is the attention weight. " +
      "Click a head's colour to toggle it, double-click to show it alone; hover a token to isolate its lines; " +
      "click a left token to open it in the neuron view."));
    var swatches = el("div", "mb-swatches");
    section.appendChild(swatches);
    var body = el("div", "mb-head-body");
    var left = el("div", "mb-tokens mb-left");
    var canvas = el("canvas", "mb-lines");
    var right = el("div", "mb-tokens mb-right");
    body.appendChild(left);
    body.appendChild(canvas);
    body.appendChild(right);
    section.appendChild(body);
    this.root.appendChild(section);
    this.headView = { section: section, swatches: swatches, left: left, right: right, canvas: canvas };
    body.addEventListener("mouseleave", function () {
      if (self.state.hover) { self.state.hover = null; self.drawLines(); }
    });
  };

  App.prototype.buildSwatches = function () {
    var self = this, s = this.set(), box = this.headView.swatches;
    box.textContent = "";
    var all = el("button", "mb-button", "all");
    all.addEventListener("click", function () { self.state.heads = new Set(range(s.heads)); self.refresh(); });
    var none = el("button", "mb-button", "none");
    none.addEventListener("click", function () { self.state.heads = new Set(); self.refresh(); });
    box.appendChild(all);
    box.appendChild(none);
    this.swatchButtons = range(s.heads).map(function (h) {
      var b = el("button", "mb-swatch", String(h));
      b.title = "head " + h;
      b.dataset.head = String(h);
      b.style.backgroundColor = css(headColor(h));
      b.addEventListener("click", function () {
        if (self.state.heads.has(h)) self.state.heads.delete(h); else self.state.heads.add(h);
        self.refresh();
      });
      b.addEventListener("dblclick", function () {
        self.state.heads = new Set([h]);
        self.state.neuronHead = h;
        self.refresh();
      });
      box.appendChild(b);
      return b;
    });
  };

  App.prototype.updateSwatches = function () {
    var heads = this.state.heads;
    this.swatchButtons.forEach(function (b, h) { b.classList.toggle("mb-off", !heads.has(h)); });
  };

  App.prototype.drawHeadView = function () {
    var self = this, s = this.set(), hv = this.headView;
    var qIdx = this.queryIndex(s), kIdx = this.keyIndex(s);
    hv.qIdx = qIdx;
    hv.kIdx = kIdx;
    function column(box, tokens, segments, idx, side) {
      box.textContent = "";
      return idx.map(function (i, row) {
        var t = el("div", "mb-token" + (segments[i] ? " mb-seg-b" : ""), tokens[i]);
        t.dataset.index = String(i);
        t.addEventListener("mouseenter", function () { self.state.hover = { side: side, index: i, row: row }; self.drawLines(); });
        if (side === "q") {
          t.addEventListener("click", function () {
            self.state.neuronQuery = i;
            if (self.neuronView) { self.neuronQuerySelect.value = String(i); self.drawNeuronView(); }
          });
        }
        box.appendChild(t);
        return t;
      });
    }
    hv.leftTokens = column(hv.left, s.queryTokens, s.querySegments, qIdx, "q");
    hv.rightTokens = column(hv.right, s.keyTokens, s.keySegments, kIdx, "k");
    var rows = Math.max(qIdx.length, kIdx.length, 1);
    var dpr = window.devicePixelRatio || 1;
    hv.canvas.width = Math.round(LINE_W * dpr);
    hv.canvas.height = Math.round(rows * ROW * dpr);
    hv.canvas.style.width = LINE_W + "px";
    hv.canvas.style.height = rows * ROW + "px";
    this.drawLines();
  };

  App.prototype.drawLines = function () {
    var s = this.set(), hv = this.headView, ctx = hv.canvas.getContext("2d");
    var dpr = window.devicePixelRatio || 1, hover = this.state.hover;
    var qIdx = hv.qIdx, kIdx = hv.kIdx, Lk = s.Lk;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, LINE_W, hv.canvas.height / dpr);
    // one device pixel takes Skia's hairline fast path (several times faster with thousands of lines)
    ctx.lineWidth = hover ? 2 : 1 / dpr;
    var heads = Array.from(this.state.heads).sort(function (a, b) { return a - b; });
    var shade = new Float32Array(hover ? (hover.side === "q" ? kIdx.length : qIdx.length) : 0);
    var shadeHead = new Int32Array(shade.length);
    var buckets = new Array(ALPHA_LEVELS);
    for (var hi = 0; hi < heads.length; hi++) {
      var h = heads[hi], a = this.att(s, this.state.layer, h);
      for (var b = 0; b < ALPHA_LEVELS; b++) buckets[b] = [];
      for (var qr = 0; qr < qIdx.length; qr++) {
        if (hover && hover.side === "q" && hover.row !== qr) continue;
        var rowOff = qIdx[qr] * Lk;
        for (var kr = 0; kr < kIdx.length; kr++) {
          if (hover && hover.side === "k" && hover.row !== kr) continue;
          var w = a[rowOff + kIdx[kr]];
          if (hover) {
            var other = hover.side === "q" ? kr : qr;
            if (w / 255 > shade[other]) { shade[other] = w / 255; shadeHead[other] = h; }
          }
          if (w < MIN_LINE) continue;
          buckets[Math.min(ALPHA_LEVELS - 1, (w * ALPHA_LEVELS) >> 8)].push(qr, kr);
        }
      }
      ctx.strokeStyle = css(headColor(h));
      for (var lv = 0; lv < ALPHA_LEVELS; lv++) {
        var seg = buckets[lv];
        if (!seg.length) continue;
        ctx.globalAlpha = (lv + 0.5) / ALPHA_LEVELS;
        ctx.beginPath();
        for (var p = 0; p < seg.length; p += 2) {
          ctx.moveTo(0, (seg[p] + 0.5) * ROW);
          ctx.lineTo(LINE_W, (seg[p + 1] + 0.5) * ROW);
        }
        ctx.stroke();
      }
    }
    ctx.globalAlpha = 1;
    var others = hover ? (hover.side === "q" ? hv.rightTokens : hv.leftTokens) : [];
    hv.leftTokens.concat(hv.rightTokens).forEach(function (t) { t.style.backgroundColor = ""; t.classList.remove("mb-hover"); });
    if (hover) {
      (hover.side === "q" ? hv.leftTokens : hv.rightTokens)[hover.row].classList.add("mb-hover");
      others.forEach(function (t, i) { if (shade[i] > 0) t.style.backgroundColor = css(headColor(shadeHead[i]), shade[i]); });
    }
  };

  /* ---------- model view ---------- */

  App.prototype.buildModelView = function () {
    var section = el("section", "mb-view mb-model-view");
    section.appendChild(el("h2", null, "Model view"));
    section.appendChild(el("p", "mb-help",
      "One thumbnail per layer (rows) and head (columns): row = attending token, column = attended token, " +
      "opacity = \u221aweight. " +
      "Click a thumbnail to enlarge it and select that layer and head in the other views."));
    var wrap = el("div", "mb-model-body");
    var grid = el("div", "mb-grid");
    var focus = el("div", "mb-focus");
    var caption = el("div", "mb-focus-caption", "Click a thumbnail");
    var big = el("canvas", "mb-focus-canvas");
    focus.appendChild(caption);
    focus.appendChild(big);
    wrap.appendChild(grid);
    wrap.appendChild(focus);
    section.appendChild(wrap);
    this.root.appendChild(section);
    this.modelView = { section: section, grid: grid, caption: caption, big: big, thumbs: [] };
  };

  App.prototype.paintHeatmap = function (canvas, s, l, h) {
    canvas.width = s.Lk;
    canvas.height = s.Lq;
    var ctx = canvas.getContext("2d"), img = ctx.createImageData(s.Lk, s.Lq);
    var a = this.att(s, l, h), rgb = headColor(h), px = img.data;
    for (var i = 0, n = a.length; i < n; i++) {
      var o = i << 2;
      px[o] = rgb[0]; px[o + 1] = rgb[1]; px[o + 2] = rgb[2]; px[o + 3] = SQRT[a[i]];
    }
    ctx.putImageData(img, 0, 0);
  };

  App.prototype.buildModelGrid = function () {
    var self = this, s = this.set(), mv = this.modelView;
    mv.grid.textContent = "";
    mv.grid.style.gridTemplateColumns = "auto repeat(" + s.heads + ", auto)";
    mv.grid.appendChild(el("div", "mb-grid-label", ""));
    range(s.heads).forEach(function (h) { mv.grid.appendChild(el("div", "mb-grid-label", "H" + h)); });
    mv.thumbs = [];
    range(s.layers).forEach(function (l) {
      mv.grid.appendChild(el("div", "mb-grid-label", "L" + l));
      range(s.heads).forEach(function (h) {
        var c = el("canvas", "mb-thumb");
        c.dataset.layer = String(l);
        c.dataset.head = String(h);
        c.title = "layer " + l + ", head " + h;
        self.paintHeatmap(c, s, l, h);
        c.tabIndex = 0;
        c.addEventListener("click", function () { self.focusHead(l, h); });
        c.addEventListener("keydown", function (e) {
          if (e.key === "Enter" || e.key === " ") { e.preventDefault(); self.focusHead(l, h); }
        });
        mv.grid.appendChild(c);
        mv.thumbs.push(c);
      });
    });
    mv.caption.textContent = "Click a thumbnail";
    mv.big.width = 0;
    mv.big.height = 0;
  };

  App.prototype.focusHead = function (l, h) {
    var s = this.set(), mv = this.modelView;
    this.state.layer = l;
    this.layerSelect.value = String(l);
    this.state.heads = new Set([h]);
    this.state.neuronHead = h;
    this.state.hover = null;
    mv.caption.textContent = (s.label || s.name) + " \u00b7 layer " + l + " \u00b7 head " + h;
    this.paintHeatmap(mv.big, s, l, h);
    mv.big.dataset.layer = String(l);
    mv.big.dataset.head = String(h);
    this.refresh();
  };

  App.prototype.markThumbnails = function () {
    var l = this.state.layer, heads = this.state.heads;
    this.modelView.thumbs.forEach(function (c) {
      c.classList.toggle("mb-selected", +c.dataset.layer === l && heads.has(+c.dataset.head));
    });
  };

  /* ---------- neuron view ---------- */

  App.prototype.buildNeuronView = function () {
    var self = this;
    var section = el("section", "mb-view mb-neuron-view");
    section.appendChild(el("h2", null, "Neuron view"));
    section.appendChild(el("p", "mb-help",
      "How one attention row is built: the query vector q of the chosen token, each key vector k, their " +
      "element-wise product q\u00d7k (orange positive, blue negative), the dot product q\u00b7k, the scaled " +
      "score, its softmax, and the probability the model itself produced."));
    var controls = el("div", "mb-controls");
    var headLabel = el("label", null, "Head ");
    this.neuronHeadSelect = el("select", "mb-neuron-head-select");
    headLabel.appendChild(this.neuronHeadSelect);
    var queryLabel = el("label", null, "Token ");
    this.neuronQuerySelect = el("select", "mb-neuron-query-select");
    queryLabel.appendChild(this.neuronQuerySelect);
    controls.appendChild(headLabel);
    controls.appendChild(queryLabel);
    section.appendChild(controls);
    this.neuronHeadSelect.addEventListener("change", function () {
      self.state.neuronHead = +self.neuronHeadSelect.value;
      self.drawNeuronView();
    });
    this.neuronQuerySelect.addEventListener("change", function () {
      self.state.neuronQuery = +self.neuronQuerySelect.value;
      self.drawNeuronView();
    });
    var note = el("p", "mb-note");
    var body = el("div", "mb-neuron-body");
    section.appendChild(note);
    section.appendChild(body);
    this.root.appendChild(section);
    this.neuronView = { section: section, body: body, note: note };
  };

  App.prototype.buildNeuronControls = function () {
    var self = this, s = this.set(), nv = this.neuronView;
    this.neuronHeadSelect.textContent = "";
    this.neuronQuerySelect.textContent = "";
    if (!s.Q) {
      nv.note.textContent = "No queries and keys were stored for this attention; re-render with the neuron view.";
      return;
    }
    range(s.heads).forEach(function (h) { option(self.neuronHeadSelect, h, String(h)); });
    s.queryTokens.forEach(function (t, i) { option(self.neuronQuerySelect, i, i + ": " + t); });
  };

  function vector(values, scales, row, d) {
    var out = new Float32Array(d), scale = scales[row], off = row * d;
    for (var i = 0; i < d; i++) out[i] = values[off + i] * scale;
    return out;
  }

  function paintCells(canvas, rows, d, cell, value, maxAbs) {
    canvas.width = d * cell;
    canvas.height = rows * NROW;
    var ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    for (var r = 0; r < rows; r++) {
      for (var c = 0; c < d; c++) {
        var v = value(r, c), a = maxAbs > 0 ? Math.min(1, Math.abs(v) / maxAbs) : 0;
        ctx.fillStyle = v >= 0 ? "rgba(230,120,20," + a + ")" : "rgba(30,100,200," + a + ")";
        ctx.fillRect(c * cell, r * NROW + 1, cell - (cell > 3 ? 1 : 0), NROW - 2);
      }
    }
  }

  App.prototype.drawNeuronView = function () {
    var s = this.set(), nv = this.neuronView, st = this.state;
    if (!s.Q) return;
    var h = Math.min(st.neuronHead, s.heads - 1), i = Math.min(st.neuronQuery, s.Lq - 1), l = st.layer, d = s.headDim;
    this.neuronHeadSelect.value = String(h);
    this.neuronQuerySelect.value = String(i);
    var base = l * s.heads + h;
    var q = vector(s.Q, s.Qs, base * s.Lq + i, d);
    var keys = [], prods = [], dots = new Float64Array(s.Lk), scores = new Float64Array(s.Lk);
    var maxK = 0, maxP = 0, maxQ = 0, j, c;
    for (c = 0; c < d; c++) maxQ = Math.max(maxQ, Math.abs(q[c]));
    var allowed = [], biasRow = s.B ? (h * s.Lq + i) * s.Lk : -1;
    for (j = 0; j < s.Lk; j++) {
      var k = vector(s.K, s.Ks, base * s.Lk + j, d), p = new Float32Array(d), dot = 0;
      for (c = 0; c < d; c++) { p[c] = q[c] * k[c]; dot += p[c]; maxK = Math.max(maxK, Math.abs(k[c])); maxP = Math.max(maxP, Math.abs(p[c])); }
      keys.push(k); prods.push(p); dots[j] = dot;
      scores[j] = dot * s.scale + (biasRow >= 0 ? s.B[biasRow + j] : 0);
      allowed.push(s.M ? s.M[i * s.Lk + j] === 1 : true);
    }
    var top = -Infinity;
    for (j = 0; j < s.Lk; j++) if (allowed[j]) top = Math.max(top, scores[j]);
    var probs = new Float64Array(s.Lk), total = 0;
    for (j = 0; j < s.Lk; j++) { probs[j] = allowed[j] ? Math.exp(scores[j] - top) : 0; total += probs[j]; }
    for (j = 0; j < s.Lk; j++) probs[j] /= total;
    var model = this.att(s, l, h).subarray(i * s.Lk, (i + 1) * s.Lk);

    nv.note.textContent = "score = q\u00b7k \u00d7 " + s.scale.toPrecision(4) +
      (s.B ? " + position bias" : "") + (s.M ? "; keys the token may not see are masked" : "") +
      (s.note ? "; " + s.note : "");
    nv.body.textContent = "";
    var cell = Math.max(2, Math.min(8, Math.floor(320 / d)));
    var qRow = el("div", "mb-neuron-query-row");
    qRow.appendChild(el("span", "mb-neuron-label", "query q: "));
    qRow.appendChild(el("span", "mb-token mb-neuron-qtoken", s.queryTokens[i]));
    var qCanvas = el("canvas", "mb-vec mb-q");
    paintCells(qCanvas, 1, d, cell, function (r, cc) { return q[cc]; }, maxQ);
    qRow.appendChild(qCanvas);
    nv.body.appendChild(qRow);

    var grid = el("div", "mb-neuron-grid");
    grid.style.gridTemplateRows = "auto repeat(" + s.Lk + ", " + NROW + "px)";
    ["key", "k", "q \u00d7 k", "q\u00b7k", "score", "softmax", "model"].forEach(function (t) {
      grid.appendChild(el("div", "mb-neuron-head", t));
    });
    var kCanvas = el("canvas", "mb-vec mb-k");
    paintCells(kCanvas, s.Lk, d, cell, function (r, cc) { return keys[r][cc]; }, maxK);
    var pCanvas = el("canvas", "mb-vec mb-qk");
    paintCells(pCanvas, s.Lk, d, cell, function (r, cc) { return prods[r][cc]; }, maxP);
    kCanvas.style.gridColumn = "2";
    kCanvas.style.gridRow = "2 / span " + s.Lk;
    pCanvas.style.gridColumn = "3";
    pCanvas.style.gridRow = "2 / span " + s.Lk;
    grid.appendChild(kCanvas);
    grid.appendChild(pCanvas);
    for (j = 0; j < s.Lk; j++) {
      var row = String(j + 2);
      var cells = [
        el("div", "mb-token mb-neuron-key" + (s.keySegments[j] ? " mb-seg-b" : ""), s.keyTokens[j]),
        el("div", "mb-num", allowed[j] ? dots[j].toFixed(2) : "\u2013"),
        el("div", "mb-num", allowed[j] ? scores[j].toFixed(2) : "masked"),
        el("div", "mb-prob"),
        el("div", "mb-num", (model[j] / 255).toFixed(3))
      ];
      var bar = el("span", "mb-bar");
      bar.style.width = (probs[j] * 100).toFixed(1) + "%";
      cells[3].appendChild(bar);
      cells[3].appendChild(el("span", "mb-prob-text", probs[j].toFixed(3)));
      var cols = [1, 4, 5, 6, 7];
      cells.forEach(function (e, n) { e.style.gridRow = row; e.style.gridColumn = String(cols[n]); grid.appendChild(e); });
    }
    nv.body.appendChild(grid);
  };

  /* ---------- start ---------- */

  function start() {
    var root = document.getElementById("mb-root");
    var t0 = performance.now();
    var payload;
    try {
      payload = JSON.parse(document.getElementById("mb-data").textContent);
    } catch (err) {
      root.textContent = "maskbench: the embedded data could not be read: " + err.message;
      throw err;
    }
    Promise.all(payload.sets.map(decodeSet)).then(function (sets) {
      var app = new App(root, payload, sets);
      window.maskbenchViews = app;
      root.dataset.startMs = t0.toFixed(1);   // navigation start -> this script running
      root.dataset.renderMs = (performance.now() - t0).toFixed(1);
      // canvases are rasterised when the frame is painted: "ready" waits for the next frame after that
      requestAnimationFrame(function () {
        requestAnimationFrame(function () {
          root.dataset.drawnMs = performance.now().toFixed(1);   // navigation start -> first frame drawn
          root.dataset.ready = "1";
        });
      });
    }).catch(function (err) {
      root.textContent = "maskbench: the attention views could not be drawn: " + err.message;
      root.dataset.ready = "error";
      console.error(err);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
