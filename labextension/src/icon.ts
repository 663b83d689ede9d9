import { LabIcon } from '@jupyterlab/ui-components';

const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M6.5 14a4.5 4.5 0 0 1-.6-8.96A6 6 0 0 1 17.4 6.1 4 4 0 0 1 17.5 14h-11z"/>
    <path d="M7 16.5l-1.2 3M11 16.5l-1.2 3M15 16.5l-1.2 3M19 16.5l-1.2 3" stroke="#616161" stroke-width="1.6" stroke-linecap="round"/>
  </g>
</svg>`;

export const rainIcon = new LabIcon({ name: 'rain-jupyter:rain', svgstr: svg });
