import { LabIcon } from '@jupyterlab/ui-components';
import flowSvg from '../style/icons/flow.svg';

/** The icon of flow files, their graph view and the jupyter-flow commands. */
export const flowIcon = new LabIcon({ name: 'jupyter-flow:flow', svgstr: flowSvg });
