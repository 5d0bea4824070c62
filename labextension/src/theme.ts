/**
 * The graph's colours from JupyterLab's theme: its CSS variables as they stand when the
 * graph is drawn, read again whenever the theme changes. The theme gives many colours as
 * translucent rgba; cytoscape draws them opaque, so each is blended over the canvas's
 * background first.
 */
import { LIGHT_THEME, type GraphTheme } from './graphstyle';

type Rgba = [number, number, number, number];

/** A CSS colour as the browser computes it (`rgb(...)` or `rgba(...)`); null when the
 * browser does not read it as a colour. */
function computed(probe: HTMLElement, value: string): Rgba | null {
  probe.style.color = '';
  probe.style.color = value;
  if (!probe.style.color) {
    return null;
  }
  const parts = window.getComputedStyle(probe).color.match(/[\d.]+/g)?.map(Number) ?? [];
  return parts.length >= 3 ? [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1] : null;
}

function hex([r, g, b]: Rgba): string {
  return `#${[r, g, b].map(c => Math.round(c).toString(16).padStart(2, '0')).join('')}`;
}

/** `colour` over `under`, as one opaque colour. */
function blend(colour: Rgba, under: Rgba): Rgba {
  const a = colour[3];
  return [0, 1, 2].map(i => colour[i] * a + under[i] * (1 - a)).concat(1) as Rgba;
}

/** The theme's colours as `element` sees them. JupyterLab marks a dark theme on the body
 * (`data-jp-theme-light="false"`). */
export function readTheme(element: HTMLElement): GraphTheme {
  const style = window.getComputedStyle(element);
  const dark = document.body.dataset.jpThemeLight === 'false';
  const fallback: GraphTheme = dark
    ? { dark, background: '#111111', text: '#e0e0e0', line: '#bdbdbd', edge: '#9e9e9e', labelBackground: '#111111', labelBorder: '#616161', accent: '#90caf9', warn: '#ffca28' }
    : LIGHT_THEME;
  const probe = document.createElement('span');
  probe.hidden = true;
  element.append(probe);
  try {
    const read = (name: string): Rgba | null => {
      const value = style.getPropertyValue(name).trim();
      return value ? computed(probe, value) : null;
    };
    const background = read('--jp-layout-color0');
    if (!background) {
      return fallback;
    }
    const under: Rgba = [background[0], background[1], background[2], 1];
    const colour = (name: string, otherwise: string) => {
      const value = read(name);
      return value ? hex(blend(value, under)) : otherwise;
    };
    return {
      dark,
      background: hex(under),
      text: colour('--jp-ui-font-color1', fallback.text),
      line: colour('--jp-ui-font-color2', fallback.line),
      edge: colour('--jp-ui-font-color3', fallback.edge),
      labelBackground: hex(under),
      labelBorder: colour('--jp-border-color1', fallback.labelBorder),
      accent: colour('--jp-brand-color1', fallback.accent),
      warn: colour('--jp-warn-color0', fallback.warn)
    };
  } finally {
    probe.remove();
  }
}
