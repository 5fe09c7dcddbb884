// The statemap viewer: a run's class map and confidence, read from its COGs by HTTP
// range requests (geotiff.js inside OpenLayers), in the map's own CRS.
//
// Everything comes from maps.json beside this page, written by statemap with the
// COGs: parts, CRS (a proj4 definition, so no projection is ever fetched), classes
// and colours, the accuracy report. `?compare=URL` (another run's viewer folder)
// puts that run on the right of a swipe.
//
// OpenLayers' GeoTIFF source does not apply a TIFF colour table, so the class
// palette is built from the classes in maps.json.
import 'ol/ol.css';
import './viewer.css';
import { fromUrl } from 'geotiff';
import Map from 'ol/Map.js';
import View from 'ol/View.js';
import { ScaleLine, defaults as defaultControls } from 'ol/control.js';
import { boundingExtent, containsCoordinate, extend as extendExtent } from 'ol/extent.js';
import LayerGroup from 'ol/layer/Group.js';
import TileLayer from 'ol/layer/WebGLTile.js';
import { get as getProjection, transform } from 'ol/proj.js';
import { register } from 'ol/proj/proj4.js';
import { getRenderPixel } from 'ol/render.js';
import GeoTIFF from 'ol/source/GeoTIFF.js';
import proj4 from 'proj4';

const MODES = ['class', 'confidence'];
const CONFIDENCE_MAX = 254;
// Confidence 0..254 on viridis (5 stops), nodata transparent.
const VIRIDIS = [
  [0, [68, 1, 84, 1]],
  [64, [59, 82, 139, 1]],
  [127, [33, 145, 140, 1]],
  [191, [94, 201, 98, 1]],
  [254, [253, 231, 37, 1]],
];

function rgba(hex) {
  const h = hex.replace('#', '');
  return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16)).concat([1]);
}

function styleFor(mode, config) {
  const transparent = ['==', ['band', 2], 0]; // the alpha band GeoTIFF adds for nodata
  if (mode === 'class') {
    const palette = Array.from({ length: 256 }, () => [0, 0, 0, 0]);
    for (const c of config.classes) palette[c.value] = rgba(c.color);
    return { color: ['case', transparent, [0, 0, 0, 0], ['palette', ['band', 1], palette]] };
  }
  const ramp = ['interpolate', ['linear'], ['band', 1]];
  for (const [value, color] of VIRIDIS) ramp.push(value, color);
  return { color: ['case', transparent, [0, 0, 0, 0], ramp] };
}

async function loadConfig(base) {
  const url = new URL('maps.json', base);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  const config = await response.json();
  config.base = url;
  return config;
}

function registerCrs(config) {
  const { code, proj4: definition } = config.crs;
  if (!getProjection(code)) {
    proj4.defs(code, definition);
    register(proj4);
  }
  return getProjection(code);
}

// One WebGL tile layer per part and mode: browsers cannot read the VRT mosaic.
function runLayers(config, projection) {
  const groups = {};
  for (const mode of MODES) {
    const layers = config.parts.map((part) => {
      const source = new GeoTIFF({
        sources: [{ url: new URL(part[mode], config.base).href, nodata: config.nodata }],
        normalize: false,
        interpolate: false,
        projection,
        transition: 0,
      });
      return new TileLayer({ source, style: styleFor(mode, config), extent: part.extent });
    });
    groups[mode] = new LayerGroup({ layers, visible: mode === 'class' });
  }
  return groups;
}

function ready(source) {
  return new Promise((resolve, reject) => {
    const check = () => {
      const state = source.getState();
      if (state === 'ready') resolve();
      else if (state === 'error') reject(source.getError());
      else source.once('change', check);
    };
    check();
  });
}

function runExtent(config) {
  return config.parts.reduce(
    (all, part) => extendExtent(all, part.extent),
    boundingExtent([config.parts[0].extent.slice(0, 2)]),
  );
}

// The map's values at a coordinate, read at full resolution from the COGs themselves.
const tiffs = new globalThis.Map();
function tiff(url) {
  if (!tiffs.has(url)) tiffs.set(url, fromUrl(url, { allowFullFile: false }));
  return tiffs.get(url);
}

async function valuesAt(config, coordinate) {
  const part = config.parts.find((p) => containsCoordinate(p.extent, coordinate));
  if (!part) return null;
  const col = Math.floor((coordinate[0] - part.extent[0]) / config.resolution);
  const row = Math.floor((part.extent[3] - coordinate[1]) / config.resolution);
  const window = [col, row, col + 1, row + 1];
  const read = async (mode) => {
    const image = await (await tiff(new URL(part[mode], config.base).href)).getImage();
    return (await image.readRasters({ window }))[0][0];
  };
  const [value, confidence] = await Promise.all(MODES.map(read));
  const res = config.resolution;
  const centre = [part.extent[0] + (col + 0.5) * res, part.extent[3] - (row + 0.5) * res];
  return { part: part.name, value, confidence, centre };
}

// Coordinates are the clicked pixel's centre (where the map has a pixel there).
function describe(config, values, clicked) {
  const coordinate = values ? values.centre : clicked;
  const classes = new globalThis.Map(config.classes.map((c) => [c.value, c]));
  const lonlat = transform(coordinate, config.crs.code, 'EPSG:4326');
  const where =
    `${config.crs.code} ${coordinate[0].toFixed(1)}, ${coordinate[1].toFixed(1)} · ` +
    `lon/lat ${lonlat[0].toFixed(6)}, ${lonlat[1].toFixed(6)}`;
  if (!values || values.value === config.nodata) {
    return { title: 'no data', lines: [where] };
  }
  const klass = classes.get(values.value);
  const pct = ((100 * values.confidence) / CONFIDENCE_MAX).toFixed(1);
  return {
    title: klass ? klass.name : `class ${values.value}`,
    color: klass ? klass.color : null,
    lines: [`confidence ${values.confidence} of ${CONFIDENCE_MAX} (${pct}%)`, where],
  };
}

function legend(element, config, mode) {
  element.replaceChildren();
  const add = (swatch, label) => {
    const row = document.createElement('div');
    row.className = 'legend-row';
    const box = document.createElement('span');
    box.className = 'swatch';
    box.style.background = swatch;
    const text = document.createElement('span');
    text.textContent = label;
    row.append(box, text);
    element.append(row);
  };
  if (mode === 'class') {
    for (const c of config.classes) add(c.color, c.name);
  } else {
    const stops = VIRIDIS.map(([v, c]) => `rgb(${c.slice(0, 3)}) ${(100 * v) / CONFIDENCE_MAX}%`);
    add(`linear-gradient(to right, ${stops.join(', ')})`, `confidence 0 .. ${CONFIDENCE_MAX}`);
  }
}

// The compare run on the right of the swipe, the base run on its left.
function clip(group, side, map, slider) {
  for (const layer of group.getLayers().getArray()) {
    layer.on('prerender', (event) => {
      const gl = event.context;
      const [width, height] = map.getSize();
      const split = (width * Number(slider.value)) / 100;
      const [x0, x1] = side === 'left' ? [0, split] : [split, width];
      const bottomLeft = getRenderPixel(event, [x0, height]);
      const topRight = getRenderPixel(event, [x1, 0]);
      gl.enable(gl.SCISSOR_TEST);
      gl.scissor(
        bottomLeft[0],
        bottomLeft[1],
        Math.max(0, topRight[0] - bottomLeft[0]),
        Math.max(0, topRight[1] - bottomLeft[1]),
      );
    });
    layer.on('postrender', (event) => event.context.disable(event.context.SCISSOR_TEST));
  }
}

function element(id) {
  return document.getElementById(id);
}

async function main() {
  const state = { ready: false, error: null, renders: 0 };
  globalThis.statemapViewer = state;
  const probe = document.createElement('canvas');
  if (!probe.getContext('webgl2') && !probe.getContext('webgl')) {
    throw new Error('this browser has no WebGL, which the map is drawn with: turn it on');
  }
  const params = new URLSearchParams(location.search);
  const config = await loadConfig(location.href);
  const projection = registerCrs(config);
  const runs = [{ config, groups: runLayers(config, projection) }];
  if (params.get('compare')) {
    const other = await loadConfig(new URL(params.get('compare'), location.href));
    if (other.crs.code !== config.crs.code) {
      throw new Error(`cannot compare: ${other.run_id} is on ${other.crs.code}, not ${config.crs.code}`);
    }
    runs.push({ config: other, groups: runLayers(other, projection) });
  }
  document.title = `statemap · ${config.title || config.run_id}`;
  element('title').textContent = config.title || config.run_id;
  const parts = config.parts.length;
  element('subtitle').textContent =
    runs.length > 1
      ? `${runs[0].config.run_id}  |  ${runs[1].config.run_id}`
      : `${config.crs.code} · ${config.resolution} m · ${parts} part${parts > 1 ? 's' : ''}`;
  if (config.report) {
    const link = element('report');
    link.href = new URL(config.report, config.base).href;
    link.hidden = false;
  }

  const layers = runs.flatMap((r) => MODES.map((m) => r.groups[m]));
  // Every part's COG header read before the first frame, so the first complete render
  // is the map (a layer whose source has no tile grid yet renders nothing).
  await Promise.all(layers.flatMap((g) => g.getLayers().getArray().map((l) => ready(l.getSource()))));
  const extent = runs.reduce((all, r) => extendExtent(all, runExtent(r.config)), runExtent(config));
  const map = new Map({
    target: 'map',
    layers,
    controls: defaultControls({ attribution: false }).extend([new ScaleLine()]),
    view: new View({
      projection,
      extent,
      constrainOnlyCenter: true, // the centre stays on the map; zooming out is free
      maxResolution: config.resolution * 2 ** (config.overviews + 2),
      minResolution: config.resolution / 8,
    }),
  });
  map.getView().fit(extent, { padding: [20, 20, 20, 20] });

  const slider = element('swipe');
  if (runs.length > 1) {
    slider.hidden = false;
    for (const mode of MODES) {
      clip(runs[0].groups[mode], 'left', map, slider);
      clip(runs[1].groups[mode], 'right', map, slider);
    }
    slider.addEventListener('input', () => map.render());
  }

  const setMode = (mode) => {
    for (const run of runs) for (const m of MODES) run.groups[m].setVisible(m === mode);
    legend(element('legend'), config, mode);
    state.mode = mode;
  };
  for (const input of document.querySelectorAll('input[name=mode]')) {
    input.addEventListener('change', () => setMode(input.value));
  }
  setMode('class');

  map.on('singleclick', async (event) => {
    const right = runs.length > 1 && event.pixel[0] > (map.getSize()[0] * slider.value) / 100;
    const run = runs[right ? 1 : 0].config;
    const info = describe(run, await valuesAt(run, event.coordinate), event.coordinate);
    const box = element('info');
    box.replaceChildren();
    const title = document.createElement('strong');
    title.className = 'info-class';
    title.textContent = info.title;
    if (info.color) title.style.borderLeft = `1em solid ${info.color}`;
    box.append(title);
    if (runs.length > 1) box.append(` (${run.run_id})`);
    for (const line of info.lines) {
      const div = document.createElement('div');
      div.textContent = line;
      box.append(div);
    }
    box.hidden = false;
    state.clicks = (state.clicks || 0) + 1;
  });

  map.on('rendercomplete', () => {
    state.renders += 1;
    state.ready = true;
    if (!state.firstRender) state.firstRender = performance.now();
  });
  state.map = map;
  // For tests and scripts: where a map coordinate is on the screen, and moving the view.
  state.pixelOf = (x, y) => map.getPixelFromCoordinate([x, y]);
  state.show = (x, y, resolution) => {
    state.ready = false;
    map.getView().setCenter([x, y]);
    map.getView().setResolution(resolution);
  };
}

main().catch((error) => {
  globalThis.statemapViewer = { ready: false, error: String(error) };
  const box = document.getElementById('error');
  box.textContent = `The viewer could not open this run: ${error.message || error}`;
  box.hidden = false;
  console.error(error);
});
