/* dreamer's Gaussian splat viewer: WebGL2, no dependencies, works offline.
 *
 * It renders a standard 3DGS .ply the way the project's own rasterizer does
 * (dreamer/splats/rasterizer.py, gsplat's rules), so a screenshot can be compared with
 * Gaussians.render(camera):
 *   - cameras are pinhole K and camera-to-world c2w with OpenCV axes (+x right, +y down,
 *     +z forward), pixel centres at +0.5;
 *   - each Gaussian is projected with the EWA Jacobian (view ray clamped to 1.3x the field of
 *     view), 0.3 px^2 added to its 2D covariance;
 *   - alpha = min(0.999, opacity * exp(-0.5 d^T conic d)), pairs below 1/255 are skipped;
 *   - colour = SH (direction = mean - camera centre) + 0.5, clamped at 0;
 *   - Gaussians are sorted by z-depth and composited over black; the sum is accumulated in
 *     a float buffer and clamped to [0, 1] at the end.
 *
 * Navigation: drag to orbit around the point the camera looks at, right-drag (or shift-drag)
 * to pan, wheel to move towards it, W A S D to walk, Q / E down and up, arrow keys to look
 * around, R to return to the first camera.
 *
 * API (window.DreamerSplatViewer): mount(element, id) -> viewer; viewer.load(spec) with
 * spec = {ply: url, cameras: [{c2w, K, width, height}], token, keepCamera}; viewer.camera() -> the
 * current {c2w, K, width, height} in the canvas's pixels; viewer.setCamera(camera);
 * viewer.state ("empty", "loading", "ready" or "error: ..."), viewer.count, viewer.token,
 * viewer.source (the URL of the shown .ply); viewer.showOverlays(false) hides the text overlays.
 * Every mounted viewer is in window.dreamerViewers[id].
 */
(function () {
  "use strict";
  if (window.DreamerSplatViewer) return;

  const TEX_WIDTH = 4096;
  const MAX_BASES = 25;

  // ---------------------------------------------------------------------------------- PLY
  const PLY_TYPES = {
    char: ["getInt8", 1], int8: ["getInt8", 1], uchar: ["getUint8", 1], uint8: ["getUint8", 1],
    short: ["getInt16", 2], int16: ["getInt16", 2], ushort: ["getUint16", 2], uint16: ["getUint16", 2],
    int: ["getInt32", 4], int32: ["getInt32", 4], uint: ["getUint32", 4], uint32: ["getUint32", 4],
    float: ["getFloat32", 4], float32: ["getFloat32", 4], double: ["getFloat64", 8], float64: ["getFloat64", 8],
  };

  function parsePly(buffer) {
    const bytes = new Uint8Array(buffer);
    const limit = Math.min(bytes.length, 65536);
    let headerEnd = -1;
    const marker = "end_header\n";
    for (let i = 0; i < limit - marker.length; i++) {
      let hit = true;
      for (let j = 0; j < marker.length; j++) {
        if (bytes[i + j] !== marker.charCodeAt(j)) { hit = false; break; }
      }
      if (hit) { headerEnd = i + marker.length; break; }
    }
    if (headerEnd < 0) throw new Error("not a PLY file (no end_header)");
    const header = new TextDecoder().decode(bytes.subarray(0, headerEnd)).split("\n");
    if (header[0].trim() !== "ply") throw new Error("not a PLY file");
    let count = 0, inVertex = false, format = "";
    const props = [];
    for (const raw of header) {
      const line = raw.trim().split(/\s+/);
      if (line[0] === "format") format = line[1];
      else if (line[0] === "element") { inVertex = line[1] === "vertex"; if (inVertex) count = parseInt(line[2], 10); }
      else if (line[0] === "property" && inVertex) {
        if (line[1] === "list") throw new Error("list properties are not supported in the vertex element");
        const type = PLY_TYPES[line[1]];
        if (!type) throw new Error("unknown PLY type " + line[1]);
        props.push({ name: line[2], getter: type[0], size: type[1] });
      }
    }
    if (format !== "binary_little_endian") throw new Error("only binary little endian PLY files are supported");
    let stride = 0;
    const offsets = {};
    for (const p of props) { offsets[p.name] = { offset: stride, getter: p.getter }; stride += p.size; }
    for (const name of ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                        "rot_0", "rot_1", "rot_2", "rot_3"]) {
      if (!offsets[name]) throw new Error("not a 3DGS ply: the property " + name + " is missing");
    }
    if (headerEnd + count * stride > buffer.byteLength) throw new Error("the PLY file is truncated");
    let rest = 0;
    while (offsets["f_rest_" + rest]) rest++;
    const bases = 1 + rest / 3;
    if (rest % 3 || ![1, 4, 9, 16, 25].includes(bases)) throw new Error(rest + " f_rest properties is not 3 * (K-1)");
    return { view: new DataView(buffer, headerEnd), count, stride, offsets, bases };
  }

  // Per Gaussian: texel 0 = mean, opacity; 1, 2 = the 3D covariance (xx xy xz yy, yz zz);
  // then one texel per SH coefficient (r, g, b).
  function packGaussians(ply) {
    const { view, count, stride, offsets, bases } = ply;
    const texels = 3 + bases;
    const rows = Math.ceil((count * texels) / TEX_WIDTH);
    const data = new Float32Array(TEX_WIDTH * Math.max(rows, 1) * 4);
    const means = new Float32Array(count * 3);
    const get = (i, name) => {
      const o = offsets[name];
      return view[o.getter](i * stride + o.offset, true);
    };
    const restNames = [];
    for (let k = 0; k < (bases - 1) * 3; k++) restNames.push("f_rest_" + k);
    for (let i = 0; i < count; i++) {
      const base = i * texels * 4;
      const x = get(i, "x"), y = get(i, "y"), z = get(i, "z");
      means[3 * i] = x; means[3 * i + 1] = y; means[3 * i + 2] = z;
      const logit = get(i, "opacity");
      const opacity = 1 / (1 + Math.exp(-logit));
      data[base] = x; data[base + 1] = y; data[base + 2] = z; data[base + 3] = opacity;
      // covariance = R S S R^T, R from the normalized quaternion (w x y z)
      let qw = get(i, "rot_0"), qx = get(i, "rot_1"), qy = get(i, "rot_2"), qz = get(i, "rot_3");
      const qn = Math.hypot(qw, qx, qy, qz) || 1;
      qw /= qn; qx /= qn; qy /= qn; qz /= qn;
      const s0 = Math.exp(get(i, "scale_0")), s1 = Math.exp(get(i, "scale_1")), s2 = Math.exp(get(i, "scale_2"));
      const R = [
        1 - 2 * (qy * qy + qz * qz), 2 * (qx * qy - qw * qz), 2 * (qx * qz + qw * qy),
        2 * (qx * qy + qw * qz), 1 - 2 * (qx * qx + qz * qz), 2 * (qy * qz - qw * qx),
        2 * (qx * qz - qw * qy), 2 * (qy * qz + qw * qx), 1 - 2 * (qx * qx + qy * qy),
      ];
      const M = [R[0] * s0, R[1] * s1, R[2] * s2, R[3] * s0, R[4] * s1, R[5] * s2, R[6] * s0, R[7] * s1, R[8] * s2];
      const c = (a, b) => M[3 * a] * M[3 * b] + M[3 * a + 1] * M[3 * b + 1] + M[3 * a + 2] * M[3 * b + 2];
      data[base + 4] = c(0, 0); data[base + 5] = c(0, 1); data[base + 6] = c(0, 2); data[base + 7] = c(1, 1);
      data[base + 8] = c(1, 2); data[base + 9] = c(2, 2);
      // SH: coefficient 0 is f_dc; f_rest is channel-major (f_rest[c * (K-1) + k])
      data[base + 12] = get(i, "f_dc_0"); data[base + 13] = get(i, "f_dc_1"); data[base + 14] = get(i, "f_dc_2");
      for (let k = 1; k < bases; k++) {
        const o = base + 12 + 4 * k;
        for (let ch = 0; ch < 3; ch++) data[o + ch] = get(i, restNames[ch * (bases - 1) + (k - 1)]);
      }
    }
    return { data, rows: Math.max(rows, 1), texels, bases, count, means };
  }

  // ---------------------------------------------------------------------------------- shaders
  const SPLAT_VS = `#version 300 es
precision highp float;
precision highp int;
precision highp sampler2D;
uniform sampler2D u_data;
uniform int u_texels;
uniform int u_bases;
uniform vec3 u_r0, u_r1, u_r2, u_t;   // w2c rotation rows and translation
uniform vec4 u_intr;                  // fx, fy, cx, cy
uniform vec2 u_size;                  // width, height (pixels)
uniform vec3 u_campos;
uniform float u_near, u_far;
in vec2 a_corner;
in uint a_index;
out vec2 v_mean;
out vec3 v_conic;
out float v_opacity;
out vec3 v_color;

vec4 fetchTexel(int i) { return texelFetch(u_data, ivec2(i % ${TEX_WIDTH}, i / ${TEX_WIDTH}), 0); }

void cull() { gl_Position = vec4(0.0, 0.0, 2.0, 1.0); }

void main() {
  int base = int(a_index) * u_texels;
  vec4 t0 = fetchTexel(base), t1 = fetchTexel(base + 1), t2 = fetchTexel(base + 2);
  vec3 mean = t0.xyz;
  float opacity = t0.w;
  vec3 mc = vec3(dot(u_r0, mean), dot(u_r1, mean), dot(u_r2, mean)) + u_t;
  if (!(mc.z > u_near && mc.z < u_far) || opacity < 1.0 / 255.0) { cull(); return; }
  mat3 cov = mat3(t1.x, t1.y, t1.z, t1.y, t1.w, t2.x, t1.z, t2.x, t2.y);
  mat3 R = transpose(mat3(u_r0, u_r1, u_r2));
  mat3 covc = R * cov * transpose(R);
  float fx = u_intr.x, fy = u_intr.y, cx = u_intr.z, cy = u_intr.w;
  float limxp = (u_size.x - cx) / fx + 0.3 * 0.5 * u_size.x / fx;
  float limxn = cx / fx + 0.3 * 0.5 * u_size.x / fx;
  float limyp = (u_size.y - cy) / fy + 0.3 * 0.5 * u_size.y / fy;
  float limyn = cy / fy + 0.3 * 0.5 * u_size.y / fy;
  float tz = mc.z;
  float tx = tz * clamp(mc.x / tz, -limxn, limxp);
  float ty = tz * clamp(mc.y / tz, -limyn, limyp);
  vec3 j0 = vec3(fx / tz, 0.0, -fx * tx / (tz * tz));
  vec3 j1 = vec3(0.0, fy / tz, -fy * ty / (tz * tz));
  float a = dot(j0, covc * j0) + 0.3;
  float b = dot(j0, covc * j1);
  float c = dot(j1, covc * j1) + 0.3;
  float det = max(a * c - b * b, 1e-10);
  vec2 m2 = vec2(fx * mc.x / tz + cx, fy * mc.y / tz + cy);
  float ext = sqrt(2.0 * log(max(opacity * 255.0, 1.0)));
  vec2 h = ext * sqrt(vec2(a, c)) + 1.0;
  if (m2.x + h.x < 0.0 || m2.x - h.x > u_size.x || m2.y + h.y < 0.0 || m2.y - h.y > u_size.y) { cull(); return; }
  vec3 dir = normalize(mean - u_campos);
  float x = dir.x, y = dir.y, z = dir.z;
  float basis[${MAX_BASES}];
  basis[0] = 0.2820947917738781;
  if (u_bases > 1) {
    basis[1] = -0.48860251190292 * y; basis[2] = 0.48860251190292 * z; basis[3] = -0.48860251190292 * x;
  }
  float z2 = z * z, fC1 = x * x - y * y, fS1 = 2.0 * x * y;
  if (u_bases > 4) {
    basis[4] = 0.5462742152960395 * fS1; basis[5] = -1.092548430592079 * z * y;
    basis[6] = 0.9461746957575601 * z2 - 0.3153915652525201; basis[7] = -1.092548430592079 * z * x;
    basis[8] = 0.5462742152960395 * fC1;
  }
  float fC2 = x * fC1 - y * fS1, fS2 = x * fS1 + y * fC1;
  if (u_bases > 9) {
    float tC = -2.285228997322329 * z2 + 0.4570457994644658, tB = 1.445305721320277 * z;
    basis[9] = -0.5900435899266435 * fS2; basis[10] = tB * fS1; basis[11] = tC * y;
    basis[12] = z * (1.865881662950577 * z2 - 1.119528997770346); basis[13] = tC * x; basis[14] = tB * fC1;
    basis[15] = -0.5900435899266435 * fC2;
  }
  if (u_bases > 16) {
    float tD = z * (-4.683325804901025 * z2 + 2.007139630671868), tC = 3.31161143515146 * z2 - 0.47308734787878;
    float tB = -1.770130769779931 * z, tA = 0.6258357354491763;
    float fC3 = x * fC2 - y * fS2, fS3 = x * fS2 + y * fC2;
    basis[16] = tA * fS3; basis[17] = tB * fS2; basis[18] = tC * fS1; basis[19] = tD * y;
    basis[20] = 1.984313483298443 * z2 * (1.865881662950577 * z2 - 1.119528997770346)
                - 1.006230589874905 * (0.9461746957575601 * z2 - 0.3153915652525201);
    basis[21] = tD * x; basis[22] = tC * fC1; basis[23] = tB * fC2; basis[24] = tA * fC3;
  }
  vec3 color = vec3(0.0);
  for (int k = 0; k < ${MAX_BASES}; k++) {
    if (k >= u_bases) break;
    color += basis[k] * fetchTexel(base + 3 + k).rgb;
  }
  v_color = max(color + 0.5, 0.0);
  v_mean = m2;
  v_conic = vec3(c / det, -b / det, a / det);
  v_opacity = opacity;
  vec2 p = m2 + a_corner * h;
  gl_Position = vec4(p.x / u_size.x * 2.0 - 1.0, 1.0 - p.y / u_size.y * 2.0, 0.0, 1.0);
}`;

  const SPLAT_FS = `#version 300 es
precision highp float;
uniform vec2 u_size;
in vec2 v_mean;
in vec3 v_conic;
in float v_opacity;
in vec3 v_color;
out vec4 fragColor;
void main() {
  vec2 d = vec2(gl_FragCoord.x, u_size.y - gl_FragCoord.y) - v_mean;
  float sigma = 0.5 * (v_conic.x * d.x * d.x + v_conic.z * d.y * d.y) + v_conic.y * d.x * d.y;
  if (sigma < 0.0) discard;
  float alpha = min(0.999, v_opacity * exp(-sigma));
  if (alpha < 1.0 / 255.0) discard;
  fragColor = vec4(v_color * alpha, alpha);
}`;

  const COPY_VS = `#version 300 es
in vec2 a_pos;
void main() { gl_Position = vec4(a_pos, 0.0, 1.0); }`;

  const COPY_FS = `#version 300 es
precision highp float;
uniform sampler2D u_image;
out vec4 fragColor;
void main() {
  vec3 c = texelFetch(u_image, ivec2(gl_FragCoord.xy), 0).rgb;
  fragColor = vec4(clamp(c, 0.0, 1.0), 1.0);
}`;

  function compile(gl, vs, fs) {
    const program = gl.createProgram();
    for (const [type, src] of [[gl.VERTEX_SHADER, vs], [gl.FRAGMENT_SHADER, fs]]) {
      const shader = gl.createShader(type);
      gl.shaderSource(shader, src);
      gl.compileShader(shader);
      if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error("shader: " + gl.getShaderInfoLog(shader));
      gl.attachShader(program, shader);
    }
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error("program: " + gl.getProgramInfoLog(program));
    return program;
  }

  // ---------------------------------------------------------------------------------- maths
  // 3x3 matrices are arrays of 9 numbers, row-major.
  const mat3Mul = (A, B) => {
    const C = new Array(9);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) {
      C[3 * i + j] = A[3 * i] * B[j] + A[3 * i + 1] * B[3 + j] + A[3 * i + 2] * B[6 + j];
    }
    return C;
  };
  const mat3Vec = (A, v) => [A[0] * v[0] + A[1] * v[1] + A[2] * v[2], A[3] * v[0] + A[4] * v[1] + A[5] * v[2],
                             A[6] * v[0] + A[7] * v[1] + A[8] * v[2]];
  const column = (R, j) => [R[j], R[3 + j], R[6 + j]];
  const dot = (a, b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  const add = (a, b, s = 1) => [a[0] + s * b[0], a[1] + s * b[1], a[2] + s * b[2]];
  const normalize = (v) => { const n = Math.hypot(v[0], v[1], v[2]) || 1; return [v[0] / n, v[1] / n, v[2] / n]; };

  // Rotation by `angle` (radians) about the unit `axis` (Rodrigues).
  function axisAngle(axis, angle) {
    const [x, y, z] = normalize(axis), c = Math.cos(angle), s = Math.sin(angle), t = 1 - c;
    return [t * x * x + c, t * x * y - s * z, t * x * z + s * y,
            t * x * y + s * z, t * y * y + c, t * y * z - s * x,
            t * x * z - s * y, t * y * z + s * x, t * z * z + c];
  }

  // Sort keys ascending: a stable LSD radix sort of float keys (two 16-bit passes).
  function sortByKey(keys, count) {
    const u = new Uint32Array(keys.buffer, 0, count);
    const k = new Uint32Array(count);
    for (let i = 0; i < count; i++) {
      const b = u[i];
      k[i] = b & 0x80000000 ? ~b >>> 0 : (b | 0x80000000) >>> 0;   // order-preserving float bits
    }
    let idx = new Uint32Array(count), tmp = new Uint32Array(count);
    for (let i = 0; i < count; i++) idx[i] = i;
    const hist = new Uint32Array(65536);
    for (const shift of [0, 16]) {
      hist.fill(0);
      for (let i = 0; i < count; i++) hist[(k[idx[i]] >>> shift) & 0xffff]++;
      let sum = 0;
      for (let b = 0; b < 65536; b++) { const h = hist[b]; hist[b] = sum; sum += h; }
      for (let i = 0; i < count; i++) { const j = idx[i]; tmp[hist[(k[j] >>> shift) & 0xffff]++] = j; }
      [idx, tmp] = [tmp, idx];
    }
    return idx;
  }

  // ---------------------------------------------------------------------------------- viewer
  class SplatViewer {
    constructor(root, id) {
      this.id = id;
      this.root = root;
      this.state = "empty";
      this.count = 0;
      this.token = null;
      this.frames = 0;
      this.near = 0.01;
      this.far = 1e10;
      root.innerHTML = "";
      root.classList.add("dreamer-viewer");
      this.canvas = document.createElement("canvas");
      this.canvas.tabIndex = 0;
      this.canvas.setAttribute("aria-label", "3D view of the scene: drag to orbit, W A S D to walk");
      this.hud = document.createElement("div");
      this.hud.className = "dreamer-viewer-hud";
      this.help = document.createElement("div");
      this.help.className = "dreamer-viewer-help";
      this.help.textContent = "drag: orbit · right-drag: pan · wheel: closer · W A S D Q E: walk · arrows: look · R: reset";
      root.style.position = "relative";
      this.canvas.style.cssText = "display:block;width:100%;height:100%;background:#000;outline:none;touch-action:none";
      const overlay = "position:absolute;left:8px;font:12px ui-sans-serif,system-ui,sans-serif;color:#ddd;" +
        "background:rgba(0,0,0,0.45);padding:2px 6px;border-radius:4px;pointer-events:none";
      this.hud.style.cssText = overlay + ";top:8px";
      this.help.style.cssText = overlay + ";bottom:8px";
      root.append(this.canvas, this.hud, this.help);
      this.setHud("No scene yet: generate one.");
      this.gl = this.canvas.getContext("webgl2", { antialias: false, preserveDrawingBuffer: true, alpha: false });
      if (!this.gl) {
        this.state = "error: WebGL2 is not available";
        this.setHud("This browser has no WebGL2: download gaussians.ply below and open it in a splat viewer.");
        return;
      }
      this.initGl();
      this.keys = new Set();
      this.bindInput();
      this.resize();
      if (window.ResizeObserver) new ResizeObserver(() => this.resize()).observe(root);
    }

    setHud(text) { this.hud.textContent = text; }

    // The text overlays (status and help) on or off, e.g. to capture the canvas alone.
    showOverlays(on) { for (const el of [this.hud, this.help]) el.style.display = on ? "" : "none"; }

    initGl() {
      const gl = this.gl;
      this.splatProgram = compile(gl, SPLAT_VS, SPLAT_FS);
      this.copyProgram = compile(gl, COPY_VS, COPY_FS);
      this.floatTarget = !!gl.getExtension("EXT_color_buffer_float");
      this.vao = gl.createVertexArray();
      gl.bindVertexArray(this.vao);
      const corners = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, corners);
      gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
      const aCorner = gl.getAttribLocation(this.splatProgram, "a_corner");
      gl.enableVertexAttribArray(aCorner);
      gl.vertexAttribPointer(aCorner, 2, gl.FLOAT, false, 0, 0);
      this.indexBuffer = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, this.indexBuffer);
      const aIndex = gl.getAttribLocation(this.splatProgram, "a_index");
      gl.enableVertexAttribArray(aIndex);
      gl.vertexAttribIPointer(aIndex, 1, gl.UNSIGNED_INT, 0, 0);
      gl.vertexAttribDivisor(aIndex, 1);
      this.copyVao = gl.createVertexArray();
      gl.bindVertexArray(this.copyVao);
      const tri = gl.createBuffer();
      gl.bindBuffer(gl.ARRAY_BUFFER, tri);
      gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 3, -1, -1, 3]), gl.STATIC_DRAW);
      const aPos = gl.getAttribLocation(this.copyProgram, "a_pos");
      gl.enableVertexAttribArray(aPos);
      gl.vertexAttribPointer(aPos, 2, gl.FLOAT, false, 0, 0);
      gl.bindVertexArray(null);
      this.dataTexture = gl.createTexture();
    }

    // The canvas's pixel grid follows its CSS size (times the device pixel ratio).
    resize() {
      if (!this.gl) return;
      const dpr = window.devicePixelRatio || 1;
      const w = Math.max(1, Math.round(this.canvas.clientWidth * dpr));
      const h = Math.max(1, Math.round(this.canvas.clientHeight * dpr));
      if (w === this.canvas.width && h === this.canvas.height && this.target) return;
      this.canvas.width = w;
      this.canvas.height = h;
      const gl = this.gl;
      if (this.floatTarget) {
        if (this.target) { gl.deleteFramebuffer(this.target.fb); gl.deleteTexture(this.target.tex); }
        const tex = gl.createTexture();
        gl.bindTexture(gl.TEXTURE_2D, tex);
        gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA16F, w, h);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
        gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
        const fb = gl.createFramebuffer();
        gl.bindFramebuffer(gl.FRAMEBUFFER, fb);
        gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0, gl.TEXTURE_2D, tex, 0);
        if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) {
          this.floatTarget = false;
          gl.deleteFramebuffer(fb);
          gl.deleteTexture(tex);
          this.target = null;
        } else {
          this.target = { fb, tex };
        }
        gl.bindFramebuffer(gl.FRAMEBUFFER, null);
      }
      this.target = this.target || { fb: null, tex: null };
      this.dirty = true;
      this.requestRender();
    }

    async load(spec) {
      if (!this.gl) return;
      if (typeof spec === "string") spec = spec.trim() ? JSON.parse(spec) : null;
      if (!spec || !spec.ply) {
        this.state = "empty";
        this.count = 0;
        this.token = spec ? spec.token || null : null;
        this.setHud("No scene yet: generate one.");
        this.requestRender();
        return;
      }
      const token = spec.token || spec.ply;
      this.state = "loading";
      this.setHud("Loading the splats…");
      try {
        const response = await fetch(spec.ply);
        if (!response.ok) throw new Error("HTTP " + response.status);
        const packed = packGaussians(parsePly(await response.arrayBuffer()));
        this.upload(packed);
        const first = (spec.cameras || [])[0];
        if (first) this.home = this.homeFrom(first);
        else if (!this.home) this.home = this.homeFrom(null);
        if (!this.cam || !spec.keepCamera) this.setCamera(null);
        this.state = "ready";
        this.token = token;
        this.source = spec.ply;
        this.setHud(packed.count.toLocaleString("en") + " Gaussians");
        this.renderNow();
      } catch (e) {
        this.state = "error: " + e.message;
        this.setHud("The splats could not be shown (" + e.message + ")");
      }
    }

    upload(packed) {
      const gl = this.gl;
      const maxSize = gl.getParameter(gl.MAX_TEXTURE_SIZE);
      if (packed.rows > maxSize) throw new Error(packed.count + " Gaussians are more than this browser's WebGL can hold");
      gl.bindTexture(gl.TEXTURE_2D, this.dataTexture);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.RGBA32F, TEX_WIDTH, packed.rows, 0, gl.RGBA, gl.FLOAT, packed.data);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
      gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
      this.packed = { texels: packed.texels, bases: packed.bases, count: packed.count, means: packed.means };
      this.count = packed.count;
      this.depths = new Float32Array(packed.count);
      this.sortedFor = null;
    }

    // The first camera of the scene: its pose and vertical field of view.
    homeFrom(cam) {
      const c2w = cam ? cam.c2w : [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]];
      const R = [c2w[0][0], c2w[0][1], c2w[0][2], c2w[1][0], c2w[1][1], c2w[1][2], c2w[2][0], c2w[2][1], c2w[2][2]];
      const C = [c2w[0][3], c2w[1][3], c2w[2][3]];
      const fovY = cam ? 2 * Math.atan(0.5 * cam.height / cam.K[1][1]) : Math.PI / 3;
      const up = column(R, 1).map((v) => -v);   // OpenCV: image "up" is -y
      return { R, C, fovY, up, pivot: this.pivotDistance(R, C) };
    }

    // How far the orbit pivot is: the median z-depth of the Gaussians in front of the camera.
    pivotDistance(R, C) {
      const means = this.packed ? this.packed.means : null;
      if (!means || !means.length) return 1;
      const f = column(R, 2), zs = [];
      const step = Math.max(1, Math.floor(means.length / 3 / 20000));
      for (let i = 0; i < means.length / 3; i += step) {
        const z = (means[3 * i] - C[0]) * f[0] + (means[3 * i + 1] - C[1]) * f[1] + (means[3 * i + 2] - C[2]) * f[2];
        if (z > this.near) zs.push(z);
      }
      if (!zs.length) return 1;
      zs.sort((a, b) => a - b);
      return zs[Math.floor(zs.length / 2)];
    }

    setCamera(cam) {
      const home = this.home || this.homeFrom(null);
      if (!cam) {
        this.cam = { R: home.R.slice(), C: home.C.slice(), pivot: home.pivot };
      } else {
        const c2w = cam.c2w;
        const R = [c2w[0][0], c2w[0][1], c2w[0][2], c2w[1][0], c2w[1][1], c2w[1][2], c2w[2][0], c2w[2][1], c2w[2][2]];
        this.cam = { R, C: [c2w[0][3], c2w[1][3], c2w[2][3]], pivot: this.cam ? this.cam.pivot : home.pivot };
      }
      this.dirty = true;
      this.requestRender();
    }

    intrinsics() {
      const w = this.canvas.width, h = this.canvas.height;
      const f = 0.5 * h / Math.tan(0.5 * (this.home ? this.home.fovY : Math.PI / 3));
      return { fx: f, fy: f, cx: w / 2, cy: h / 2, w, h };
    }

    // The current camera in the canvas's pixels: {c2w (4x4, OpenCV axes), K, width, height}.
    camera() {
      if (!this.cam) this.setCamera(null);
      const { R, C } = this.cam;
      const k = this.intrinsics();
      return {
        c2w: [[R[0], R[1], R[2], C[0]], [R[3], R[4], R[5], C[1]], [R[6], R[7], R[8], C[2]], [0, 0, 0, 1]],
        K: [[k.fx, 0, k.cx], [0, k.fy, k.cy], [0, 0, 1]],
        width: k.w, height: k.h,
      };
    }

    cameraJSON() { return this.state === "ready" ? JSON.stringify(this.camera()) : ""; }

    // ------------------------------------------------------------------------------ motion
    orbit(yaw, pitch) {
      const { R, C, pivot } = this.cam;
      const up = this.home.up;
      const P = add(C, column(R, 2), pivot);
      let rot = axisAngle(up, yaw);
      const right = mat3Vec(rot, column(R, 0));
      rot = mat3Mul(axisAngle(right, pitch), rot);
      const R2 = mat3Mul(rot, R);
      if (Math.abs(dot(column(R2, 2), up)) > 0.995) return;   // never look straight up or down
      this.cam.R = R2;
      this.cam.C = add(P, mat3Vec(rot, add(C, P, -1)));
      this.dirty = true;
    }

    look(yaw, pitch) {
      const { R } = this.cam;
      let rot = axisAngle(this.home.up, yaw);
      rot = mat3Mul(axisAngle(mat3Vec(rot, column(R, 0)), pitch), rot);
      const R2 = mat3Mul(rot, R);
      if (Math.abs(dot(column(R2, 2), this.home.up)) > 0.995) return;
      this.cam.R = R2;
      this.dirty = true;
    }

    move(right, down, forward) {
      const { R } = this.cam;
      let C = add(this.cam.C, column(R, 0), right);
      C = add(C, this.home.up, -down);
      this.cam.C = add(C, column(R, 2), forward);
      this.dirty = true;
    }

    bindInput() {
      const canvas = this.canvas;
      let drag = null;
      canvas.addEventListener("contextmenu", (e) => e.preventDefault());
      canvas.addEventListener("pointerdown", (e) => {
        canvas.focus();
        drag = { x: e.clientX, y: e.clientY, pan: e.button === 2 || e.shiftKey };
        canvas.setPointerCapture(e.pointerId);
      });
      canvas.addEventListener("pointermove", (e) => {
        if (!drag || !this.cam) return;
        const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
        drag.x = e.clientX; drag.y = e.clientY;
        if (drag.pan) {
          const s = this.cam.pivot / this.intrinsics().fy * (window.devicePixelRatio || 1);
          this.move(-dx * s, 0, 0);
          this.cam.C = add(this.cam.C, column(this.cam.R, 1), -dy * s);
        } else {
          this.orbit(-dx * 0.005, dy * 0.005);
        }
        this.requestRender();
      });
      const end = () => { drag = null; };
      canvas.addEventListener("pointerup", end);
      canvas.addEventListener("pointercancel", end);
      canvas.addEventListener("wheel", (e) => {
        if (!this.cam) return;
        e.preventDefault();
        const step = Math.max(-0.5, Math.min(0.5, e.deltaY * 0.001));
        const d = this.cam.pivot * step;
        this.cam.C = add(this.cam.C, column(this.cam.R, 2), -d);
        this.cam.pivot = Math.max(1e-3, this.cam.pivot + d);
        this.dirty = true;
        this.requestRender();
      }, { passive: false });
      const keys = ["w", "a", "s", "d", "q", "e", "arrowleft", "arrowright", "arrowup", "arrowdown"];
      canvas.addEventListener("keydown", (e) => {
        const k = e.key.toLowerCase();
        if (k === "r") { this.setCamera(null); e.preventDefault(); return; }
        if (!keys.includes(k)) return;
        e.preventDefault();
        this.keys.add(k);
        this.requestRender();
      });
      canvas.addEventListener("keyup", (e) => this.keys.delete(e.key.toLowerCase()));
      canvas.addEventListener("blur", () => this.keys.clear());
    }

    // One step of the held keys: walking speed is a fifth of the pivot distance per step.
    applyKeys() {
      if (!this.keys.size || !this.cam) return false;
      const step = 0.05 * this.cam.pivot, turn = 0.03;
      const k = (name) => (this.keys.has(name) ? 1 : 0);
      this.move(step * (k("d") - k("a")), step * (k("e") - k("q")) * -1, step * (k("w") - k("s")));
      this.look(turn * (k("arrowleft") - k("arrowright")), turn * (k("arrowup") - k("arrowdown")));
      return true;
    }

    requestRender() {
      if (this.pending) return;
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        const moving = this.applyKeys();
        if (this.dirty) this.renderNow();
        if (moving) this.requestRender();
      });
    }

    // ------------------------------------------------------------------------------ drawing
    sort(R, t) {
      const n = this.packed.count, means = this.packed.means, depths = this.depths;
      let live = 0;
      const order = new Uint32Array(n);
      const keys = new Float32Array(n);
      // Backwards, so that the stable sort keeps Gaussians at equal depth in reverse index order:
      // composited back to front, that is the front-to-back index order of the project's rasterizer.
      for (let i = n - 1; i >= 0; i--) {
        const z = R[6] * means[3 * i] + R[7] * means[3 * i + 1] + R[8] * means[3 * i + 2] + t[2];
        depths[i] = z;
        if (z > this.near && z < this.far) { order[live] = i; keys[live] = -z; live++; }   // far first
      }
      const idx = sortByKey(keys, live);
      const sorted = new Uint32Array(live);
      for (let i = 0; i < live; i++) sorted[i] = order[idx[i]];
      return sorted;
    }

    renderNow() {
      const gl = this.gl;
      this.dirty = false;
      if (!gl) return;
      this.frames++;
      const w = this.canvas.width, h = this.canvas.height;
      gl.bindFramebuffer(gl.FRAMEBUFFER, this.target ? this.target.fb : null);
      gl.viewport(0, 0, w, h);
      gl.clearColor(0, 0, 0, 0);
      gl.clear(gl.COLOR_BUFFER_BIT);
      if (this.state === "ready" && this.packed && this.cam) {
        const { R, C } = this.cam;
        // w2c = [R^T | -R^T C]; the rows of R^T are the columns of R.
        const rows = [column(R, 0), column(R, 1), column(R, 2)];
        const t = rows.map((r) => -dot(r, C));
        const Rt = [...rows[0], ...rows[1], ...rows[2]];
        const order = this.sort(Rt, t);
        const k = this.intrinsics();
        gl.useProgram(this.splatProgram);
        const u = (name) => gl.getUniformLocation(this.splatProgram, name);
        gl.activeTexture(gl.TEXTURE0);
        gl.bindTexture(gl.TEXTURE_2D, this.dataTexture);
        gl.uniform1i(u("u_data"), 0);
        gl.uniform1i(u("u_texels"), this.packed.texels);
        gl.uniform1i(u("u_bases"), this.packed.bases);
        gl.uniform3fv(u("u_r0"), rows[0]);
        gl.uniform3fv(u("u_r1"), rows[1]);
        gl.uniform3fv(u("u_r2"), rows[2]);
        gl.uniform3fv(u("u_t"), t);
        gl.uniform4f(u("u_intr"), k.fx, k.fy, k.cx, k.cy);
        gl.uniform2f(u("u_size"), w, h);
        gl.uniform3fv(u("u_campos"), C);
        gl.uniform1f(u("u_near"), this.near);
        gl.uniform1f(u("u_far"), this.far);
        gl.bindVertexArray(this.vao);
        gl.bindBuffer(gl.ARRAY_BUFFER, this.indexBuffer);
        gl.bufferData(gl.ARRAY_BUFFER, order, gl.DYNAMIC_DRAW);
        gl.enable(gl.BLEND);
        gl.blendFunc(gl.ONE, gl.ONE_MINUS_SRC_ALPHA);
        gl.drawArraysInstanced(gl.TRIANGLE_STRIP, 0, 4, order.length);
        gl.disable(gl.BLEND);
        gl.bindVertexArray(null);
      }
      if (this.target && this.target.fb) {
        gl.bindFramebuffer(gl.FRAMEBUFFER, null);
        gl.viewport(0, 0, w, h);
        gl.useProgram(this.copyProgram);
        gl.activeTexture(gl.TEXTURE0);
        gl.bindTexture(gl.TEXTURE_2D, this.target.tex);
        gl.uniform1i(gl.getUniformLocation(this.copyProgram, "u_image"), 0);
        gl.bindVertexArray(this.copyVao);
        gl.drawArrays(gl.TRIANGLES, 0, 3);
        gl.bindVertexArray(null);
      }
    }
  }

  const viewers = (window.dreamerViewers = window.dreamerViewers || {});
  window.DreamerSplatViewer = {
    mount(element, id) {
      const viewer = new SplatViewer(element, id);
      viewers[id] = viewer;
      return viewer;
    },
    parsePly,
    packGaussians,
  };
})();
