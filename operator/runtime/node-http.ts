// node:http and node:https, loaded through require. An ESM import of node:http builds its module
// namespace from every export, and three of them (WebSocket, CloseEvent, MessageEvent) are getters that
// load the bundled undici: about 5 MB of RSS and 1.6 MB of heap in every operator process, for a fetch
// implementation nothing here uses. require returns the module object, whose getters stay unread.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export const http = require('node:http') as typeof import('node:http');
export const https = require('node:https') as typeof import('node:https');
