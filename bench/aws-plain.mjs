// The baseline the issue names: a plain, unbundled Node script that only fetches the ID token
// and makes the one @aws-sdk/client-sts call (region and endpoint from the environment).
import { AssumeRoleWithWebIdentityCommand, STSClient } from '@aws-sdk/client-sts';

const url = new URL(process.env.ACTIONS_ID_TOKEN_REQUEST_URL);
url.searchParams.set('audience', 'sts.amazonaws.com');
const res = await fetch(url, {
  headers: { Authorization: `Bearer ${process.env.ACTIONS_ID_TOKEN_REQUEST_TOKEN}` },
});
const { value } = await res.json();
const sts = new STSClient({ region: process.env.AWS_REGION });
const out = await sts.send(
  new AssumeRoleWithWebIdentityCommand({
    RoleArn: 'arn:aws:iam::111122223333:role/bench',
    RoleSessionName: 'bench',
    WebIdentityToken: value,
    DurationSeconds: 900,
  }),
);
if (!out.Credentials?.SessionToken) process.exit(1);
