package adsclient

import statuspb "google.golang.org/genproto/googleapis/rpc/status"

type statusProto = statuspb.Status
