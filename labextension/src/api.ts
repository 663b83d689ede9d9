import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** A governor as the server extension reports it. */
export interface IGovernor {
  id: string;
  cpus: number | null;
  cpu_usage: number | null;
  mem_usage: number | null;
  running: number | null;
  finished: number | null;
  alive: boolean;
}

/** A session (open, or one of the last few that ended). */
export interface ISession {
  session: number;
  name: string | null;
  status: string;
  tasks: number;
  waiting: number;
  running: number;
  finished: number;
  failed: number;
  progress: number | null;
}

/** One entry of a server's `/charts.json`. */
export interface IChart {
  id: string;
  title: string;
  url: string;
}

/** A Rain server of this machine and what it says about itself. */
export interface ICluster {
  pid: number;
  address: string;
  host: string;
  port: number;
  http_host: string;
  http_port: number;
  started: number;
  owner: string;
  logdir: string;
  origin: string;
  dashboard: string | null;
  reachable: boolean;
  error: string | null;
  governors: IGovernor[];
  sessions: ISession[];
  session_count: number;
  charts: IChart[];
}

export interface IClusterList {
  clusters: ICluster[];
  time: number;
}

function settings(): ServerConnection.ISettings {
  return ServerConnection.makeSettings();
}

/** A JSON request to the server extension (`<base>/rain/api/...`). */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {}
): Promise<T> {
  const s = settings();
  const url = URLExt.join(s.baseUrl, 'rain', 'api', endPoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, s);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  const text = await response.text();
  let data: any = text;
  if (text.length > 0) {
    try {
      data = JSON.parse(text);
    } catch {
      // not JSON: keep the text for the error message
    }
  }
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response, data?.message || text);
  }
  return data as T;
}

export function listClusters(): Promise<IClusterList> {
  return requestAPI<IClusterList>('clusters');
}

/** The pids of the running servers only (cheap: polled often to notice new ones). */
export function listServerPids(): Promise<{ pids: number[] }> {
  return requestAPI<{ pids: number[] }>('clusters?brief=1');
}

/** Start a local cluster of `governors` governors with `cpus` CPUs each. */
export function startCluster(
  governors: number,
  cpus: number
): Promise<{ id: string; address: string; http_port: number }> {
  return requestAPI('clusters', {
    method: 'POST',
    body: JSON.stringify({ governors, cpus })
  });
}

export function stopCluster(pid: number): Promise<{ stopped: boolean }> {
  return requestAPI(`clusters/${pid}`, { method: 'DELETE' });
}

/** The proxied URL of a path on a cluster's HTTP port. */
export function proxyUrl(httpPort: number, path: string): string {
  const s = settings();
  const prefix = URLExt.join(s.baseUrl, 'rain', 'proxy', String(httpPort));
  return prefix + '/' + path.replace(/^\/+/, '');
}
