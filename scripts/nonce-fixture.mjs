#!/usr/bin/env node
// Regenerates test/fixtures/nonce-lines.json: the lines real trading code prints when an exchange
// rejects a nonce or an API key. ccxt (a dev dependency) is pointed at a local HTTP server that
// answers every call with one exchange error payload (from ccxt's exceptions maps and the
// exchanges' docs); the error it raises is logged the usual ways (Node console, template string,
// class + message, pino JSON), then in Python ccxt's, freqtrade's and structlog's formats. The
// exchanges' own SDK wordings (python-binance, pybit, python-okx, kucoin-python, hummingbot) are
// added from their source. Run: node scripts/nonce-fixture.mjs (after npm install).
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { inspect } from 'node:util';
import ccxt from 'ccxt';

const PAYLOADS = {
  kraken: [
    [200, { error: ['EAPI:Invalid nonce'] }],
    [200, { error: ['EAPI:Invalid key'] }],
    [200, { error: ['EAPI:Invalid signature'] }],
    [200, { error: ['EGeneral:Permission denied'] }],
    [200, { error: ['EGeneral:Temporary lockout'] }],
    [200, { error: ['EAPI:Rate limit exceeded'] }],
  ],
  binance: [
    [400, { code: -1021, msg: 'Timestamp for this request is outside of the recvWindow.' }],
    [400, { code: -1021, msg: "Timestamp for this request was 1000ms ahead of the server's time." }],
    [400, { code: -1022, msg: 'Signature for this request is not valid.' }],
    [401, { code: -2015, msg: 'Invalid API-key, IP, or permissions for action.' }],
    [401, { code: -2014, msg: 'API-key format invalid.' }],
    [400, { code: -2008, msg: 'Invalid Api-Key ID.' }],
  ],
  bitfinex: [
    [500, ['error', 10114, 'nonce: small']],
    [500, ['error', 10100, 'apikey: invalid']],
    [500, ['error', 10100, 'apikey: digest invalid']],
  ],
  kucoin: [
    [401, { code: '400002', msg: 'Invalid KC-API-TIMESTAMP' }],
    [401, { code: '400003', msg: 'KC-API-KEY not exists' }],
    [401, { code: '400004', msg: 'Invalid KC-API-PASSPHRASE' }],
    [401, { code: '400005', msg: 'Invalid KC-API-SIGN' }],
    [401, { code: '400006', msg: 'Invalid request ip, the current clientIp is:1.2.3.4' }],
  ],
  coinbase: [
    [401, { error: 'unauthorized', error_details: 'Unauthorized', message: 'Unauthorized' }],
    [401, { error: 'PERMISSION_DENIED', error_details: 'Missing required scopes', message: 'Missing required scopes' }],
  ],
  coinbaseexchange: [
    [400, { message: 'request timestamp expired' }],
    [401, { message: 'invalid signature' }],
    [401, { message: 'Invalid API Key' }],
    [401, { message: 'Invalid Passphrase' }],
  ],
  bybit: [
    [200, { retCode: 10002, retMsg: 'invalid request, please check your server timestamp or recv_window param. req_timestamp[1700000000000],server_timestamp[1700000006000],recv_window[5000]', result: {}, time: 1700000006000 }],
    [200, { retCode: 10003, retMsg: 'API key is invalid.', result: {}, time: 1700000006000 }],
    [200, { retCode: 10004, retMsg: 'error sign! origin_string[1700000000000XXXX5000]', result: {}, time: 1700000006000 }],
    [200, { retCode: 10005, retMsg: 'Permission denied, please check your API key permissions.', result: {}, time: 1700000006000 }],
    [200, { retCode: 10010, retMsg: "Unmatched IP, please check your API key's bound IP addresses.", result: {}, time: 1700000006000 }],
  ],
  okx: [
    [401, { code: '50102', msg: 'Timestamp request expired', data: [] }],
    [401, { code: '50111', msg: 'Invalid OK-ACCESS-KEY', data: [] }],
    [401, { code: '50112', msg: 'Invalid OK-ACCESS-TIMESTAMP', data: [] }],
    [401, { code: '50113', msg: 'Invalid Sign', data: [] }],
    [401, { code: '50105', msg: 'Invalid OK-ACCESS-PASSPHRASE', data: [] }],
    [401, { code: '50110', msg: 'Your IP 1.2.3.4 is not included in your API key\'s IP whitelist.', data: [] }],
  ],
};

// The exchanges' own SDKs and bots, from their source (not through ccxt).
const SDK = {
  kraken: ['hummingbot.connector.exchange.kraken - ERROR - Invalid nonce error from /0/private/Balance. Please ensure your Kraken API key nonce window is at least 10, and if needed reset your API key.'],
  binance: [
    "binance.exceptions.BinanceAPIException: APIError(code=-1021): Timestamp for this request was 1000ms ahead of the server's time.",
    'binance.exceptions.BinanceAPIException: APIError(code=-2015): Invalid API-key, IP, or permissions for action.',
    'binance.exceptions.BinanceAPIException: APIError(code=-1022): Signature for this request is not valid.',
  ],
  kucoin: ['kucoin.exceptions.KucoinAPIException: KucoinAPIException 400002: Invalid KC-API-TIMESTAMP', 'KucoinAPIException 400003: KC-API-KEY not exists'],
  bybit: [
    'pybit.exceptions.InvalidRequestError: invalid request, please check your server timestamp or recv_window param. req_timestamp[1700000000000],server_timestamp[1700000006000],recv_window[5000] (ErrCode: 10002) (ErrTime: 10:00:06).',
    'pybit.exceptions.InvalidRequestError: API key is invalid. (ErrCode: 10003) (ErrTime: 10:00:06).',
    'pybit.exceptions.InvalidRequestError: error sign! origin_string[1700000000000XXXX5000] (ErrCode: 10004) (ErrTime: 10:00:06).',
  ],
  okx: ['okx.exceptions.OkxAPIException: API Request Error(code=50113): Invalid Sign', 'okx.exceptions.OkxAPIException: API Request Error(code=50102): Timestamp request expired'],
};

// Lines a bot prints every day that carry the same numbers and words: none may match.
const ORDINARY = [
  '2026-11-23T10:00:00Z heartbeat 42 XBTUSD 61002.1',
  'order 10002 filled at 10002.5, qty 0.50102',
  'placed order id 400002 on kucoin',
  'balance: -1021.55 USD (margin call?)',
  'code review done: 50102 lines',
  'recv_window set to 5000 ms',
  'nonce generator initialised',
  'nonce window set to 10 on the Kraken key',
  'GET /api/time 200 12ms',
  'retCode=0 retMsg=OK',
  '{"retCode":0,"retMsg":"OK","result":{"list":[]},"time":1700000010002}',
  '{"code":"0","msg":"","data":[{"ordId":"50102000123","clOrdId":"b15"}]}',
  '{"code":200000,"data":{"orderId":"400002abc"}}',
  'ts=1700000050102 price=50111.5 size=0.0010003',
  'trade id 10114 at 10100.0 on bitfinex',
  '["te",10114,1700000000000,0.01,10100]',
  'server time drift -1021 us, within tolerance',
  'filled: {"symbol":"BTCUSDT","orderId":10021022,"price":"61021.00"}',
  'kraken ticker XBTUSD c=["61000.1","0.0010002"]',
  'okx balance 50113.25 USDT',
  'binance ws ping 2015 ms',
  'signature cache warmed (2008 entries)',
  'freqtrade.worker - INFO - Bot heartbeat. PID=50110, version=2024.10, state=RUNNING',
  'hummingbot: nonce tracker ready',
  '{"level":30,"time":1700000000000,"msg":"order placed","code":0}',
  'Invalid order size 0.0001 for XBTUSD (min 0.0002)',
  'coinbase: order 400006 canceled by user',
  'bybit position size 10005 contracts',
  'Timestamp for the candle is 2026-11-23T10:00:00Z',
  'API key loaded from environment (key id k1)',
];

async function capture(exchangeId, status, body) {
  const server = http.createServer((req, res) => {
    req.resume();
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}`;
  const ex = new ccxt[exchangeId]({ apiKey: 'fixture-key', secret: Buffer.from('fixture-secret-xyz').toString('base64'), password: 'fixture-pass', timeout: 5000, enableRateLimit: false });
  const point = (v) => (typeof v === 'string' ? v.replace(/^https?:\/\/[^/]+/, base) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, point(x)])) : v);
  ex.urls.api = point(ex.urls.api);
  ex.markets = {}; // no market load: the first private call meets the error
  ex.marketsLoaded = true;
  try {
    await ex.fetchBalance();
    throw new Error(`${exchangeId}: no error for ${JSON.stringify(body)}`);
  } catch (err) {
    if (!(err instanceof ccxt.BaseError)) throw err;
    return err;
  } finally {
    server.close();
  }
}

function lines(err) {
  const name = err.constructor.name;
  const stack = `${name}: ${err.message}\n    at Exchange.handleErrors`;
  const py = `ccxt.base.errors.${name}: ${err.message}`;
  return [
    inspect(err).split('\n')[0], // console.error(err)
    `${err}`,
    `${name} ${err.message}`,
    JSON.stringify({ level: 50, time: 1700000000000, pid: 4242, err: { type: name, message: err.message, stack }, msg: err.message }), // pino {err}
    py, // Python ccxt traceback's last line
    `2026-11-23 10:00:00,123 - freqtrade.exchange.common - WARNING - get_balances() returned exception: "Could not get balance due to ${name}. Message: ${err.message}"`,
    JSON.stringify({ event: 'order failed', error: `${name}(${JSON.stringify(err.message)})`, level: 'error', timestamp: '2026-11-23T10:00:00Z' }), // structlog
  ];
}

const out = { generatedBy: 'scripts/nonce-fixture.mjs', ccxt: ccxt.version, exchanges: {}, ordinary: ORDINARY };
for (const [id, payloads] of Object.entries(PAYLOADS)) {
  const preset = id === 'coinbaseexchange' ? 'coinbase' : id;
  out.exchanges[preset] ??= [];
  for (const [status, body] of payloads) out.exchanges[preset].push(...lines(await capture(id, status, body)));
  out.exchanges[preset].push(...(SDK[id] ?? []));
}
writeFileSync(new URL('../test/fixtures/nonce-lines.json', import.meta.url), JSON.stringify(out, null, 1) + '\n');
const n = Object.values(out.exchanges).reduce((a, l) => a + l.length, 0);
console.log(`wrote ${n} error lines for ${Object.keys(out.exchanges).length} presets and ${ORDINARY.length} ordinary lines (ccxt ${ccxt.version})`);
