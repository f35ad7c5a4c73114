import type { ProblemKind } from './figures.js';

/** The console's words (contract §11): Chinese by default, English on request (?lang=en, a cookie, Accept-Language). */

export type Lang = 'zh' | 'en';

const WORDS = {
  title: ['扫码盒子 · 商户后台', 'scanbox · merchant backend'],
  login: ['登录', 'Log in'],
  logout: ['退出', 'Log out'],
  name: ['用户名', 'Name'],
  password: ['密码', 'Password'],
  loginFailed: ['用户名或密码错误', 'Wrong name or password'],
  loginBlocked: ['尝试次数过多，请十五分钟后再试', 'Too many attempts: try again in 15 minutes'],
  fleet: ['门店设备', 'Fleet'],
  problems: ['待处理问题', 'Problems'],
  actions: ['操作记录', 'Admin actions'],
  chain: ['全部门店', 'The chain'],
  today: ['今日', 'Today'],
  online: ['在线', 'online'],
  offline: ['离线', 'offline'],
  revoked: ['已吊销', 'revoked'],
  box: ['设备', 'Box'],
  state: ['状态', 'State'],
  version: ['版本', 'Version'],
  health: ['健康', 'Health'],
  lastHeard: ['最后心跳', 'Last heartbeat'],
  paidCount: ['收款笔数', 'Paid'],
  paidSum: ['收款金额', 'Paid (yuan)'],
  refunds: ['退款', 'Refunds'],
  net: ['净额', 'Net'],
  boxes: ['设备数', 'Boxes'],
  byHour: ['今日每小时收款（元）', "Today's sales by hour (yuan)"],
  byDay: ['近30天每日收款（元）', 'Last 30 days by day (yuan)'],
  days: ['每日', 'Days'],
  day: ['日期', 'Day'],
  heartbeats: ['心跳记录', 'Heartbeats'],
  calls: ['最近调用', 'Recent calls'],
  call: ['调用', 'Call'],
  outcome: ['结果', 'Outcome'],
  time: ['时间', 'Time'],
  uptime: ['运行时长', 'Uptime'],
  clock: ['时钟同步', 'Clock synced'],
  openSale: ['进行中交易', 'Open sale'],
  pending: ['待撤销/待退款', 'Pending reversals/refunds'],
  reconciliation: ['最近对账', 'Last reconciliation'],
  disk: ['剩余磁盘', 'Free disk'],
  journal: ['日志大小', 'Journal'],
  none: ['无', 'none'],
  yes: ['是', 'yes'],
  no: ['否', 'no'],
  policy: ['策略', 'Policy'],
  maxAmount: ['单笔上限（元，空为默认）', 'Largest amount (yuan, empty: default)'],
  refundsAllowed: ['允许退款', 'Refunds'],
  default: ['默认', 'default'],
  on: ['允许', 'on'],
  off: ['禁止', 'off'],
  save: ['保存', 'Save'],
  revoke: ['吊销设备', 'Revoke this box'],
  revokeConfirm: ['确认吊销？吊销后该设备无法再收款，只能查询和撤销吊销前的订单。', 'Revoke it? The box can take no new payment; it may only query and reverse its orders made before.'],
  revokeYes: ['确认吊销', 'Yes, revoke'],
  cancel: ['取消', 'Cancel'],
  revokedOk: ['已吊销', 'Revoked'],
  policyOk: ['策略已保存', 'Policy saved'],
  noProblems: ['没有待处理的问题', 'Nothing needs a person'],
  problem: ['问题', 'Problem'],
  detail: ['详情', 'Detail'],
  since: ['时间', 'When'],
  who: ['操作人', 'Who'],
  what: ['操作', 'What'],
  notFound: ['没有这个设备', 'No such box'],
  forbidden: ['请求无效（缺少或错误的表单令牌），请刷新页面后重试', 'Refused: the form token is missing or wrong; reload the page and try again'],
  badInput: ['输入无效', 'Invalid input'],
  never: ['从未', 'never'],
  certUntil: ['证书有效期至', 'Certificate until'],
  language: ['English', '中文'],
} as const;

export type Word = keyof typeof WORDS;

export function t(lang: Lang, word: Word): string {
  return WORDS[word][lang === 'zh' ? 0 : 1];
}

const PROBLEMS: Record<ProblemKind, [string, string]> = {
  OFFLINE: ['设备离线（超过3分钟无心跳）', 'Box offline (no heartbeat for 3 minutes)'],
  NEVER_HEARD: ['从未收到心跳', 'Never heard from'],
  FAULT: ['设备故障', 'Box in FAULT'],
  BOX_OFFLINE: ['设备无法连接微信支付', 'Box cannot reach WeChat Pay'],
  REVERSAL_PENDING: ['待撤销订单', 'Reversals pending'],
  REVERSAL_REFUSED: ['撤销被拒绝', 'Reversal refused'],
  REFUND_PENDING: ['退款处理中', 'Refunds pending'],
  REFUND_CHANGE: ['退款异常（CHANGE）', 'Refund CHANGE'],
  REFUND_CLOSED: ['退款已关闭', 'Refund closed'],
  RECONCILIATION: ['对账差异', 'Reconciliation discrepancies'],
  BACKEND_RECONCILIATION: ['后台对账差异', "Backend's reconciliation discrepancy"],
  CLOCK: ['时钟未同步', 'Clock not synchronised'],
  CERT_EXPIRING: ['设备证书即将过期', 'Certificate expiring'],
  DISK: ['磁盘空间不足', 'Disk nearly full'],
};

export function problemText(lang: Lang, kind: ProblemKind): string {
  return PROBLEMS[kind][lang === 'zh' ? 0 : 1];
}

/** ?lang= first, then the cookie, then Accept-Language (English only when it comes before any Chinese). */
export function pickLang(query: string | undefined, cookie: string | undefined, acceptLanguage: string | undefined): Lang {
  for (const v of [query, cookie]) if (v === 'en' || v === 'zh') return v;
  const first = (acceptLanguage ?? '')
    .split(',')
    .map((part) => part.trim().split(';')[0]!.toLowerCase())
    .find((tag) => tag.startsWith('en') || tag.startsWith('zh'));
  return first?.startsWith('en') ? 'en' : 'zh';
}
