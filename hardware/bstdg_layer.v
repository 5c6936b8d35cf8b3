// One layer of a bstdg network: binary (±1) weights, integer thresholds, non-leaky
// integrate-and-fire, every neuron fires at most once (see bstdg/engine/event.py).
//
// Memories, loaded from the hex export (bstdg/export/hex_format.py) with $readmemh:
//   wmem[j]  the sign bits of neuron j, MSB first: input i is wmem[j][ROWW-1-i], 1 = +1
//   tmem[j]  the threshold of neuron j (16-bit, 1..32767)
// and per neuron the potential vmem[j] (PW-bit two's complement) and the fired flag fmem[j].
//
// Input: a token stream (FWFT FIFO) in time order, {kind, payload}:
//   SPIKE(i)  presynaptic spike of input i (an input may spike several times)
//   STEP(t)   all spikes of step t have been sent
//   END       the sample has no more spikes
// The layer collects up to K spikes, then makes one pass over its neurons (one neuron per
// clock, pipelined reads): V_j += sum_k (w_j[i_k] ? +1 : -1). At STEP(t) the pass also
// applies the threshold test V_j >= theta_j to the neurons that have not fired: those fire
// at step t, in index order. A pass therefore sees every spike of step t before any neuron
// is tested, as the engine does (no delay: a spike at step t reaches the next layer at t).
//
// A hidden layer (IS_OUTPUT = 0) sends SPIKE(j) for each neuron that fires and then STEP(t)
// (STEP only for steps in which something fired), and forwards END.
// The output layer (IS_OUTPUT = 1) decides: at the first step in which outputs fire, among
// them the highest potential wins, equal potentials go to the lower index and set `tie`;
// at END with no output spike (silent sample) every output is a candidate, with its
// potential after all inputs, and the decision time is T_MAX.
//
// Cycles: a pass takes N_OUT + 2 clocks; a token takes one clock.
`default_nettype none

module bstdg_layer #(
    parameter N_IN = 784,
    parameter N_OUT = 600,
    parameter PW = 11,           // potential width: holds -fan_in..fan_in (signed)
    parameter K = 16,            // input spikes added per pass over the neurons
    parameter IS_OUTPUT = 0,
    parameter T_MAX = 256,
    parameter DW = 16,           // token payload width
    parameter WEIGHTS = "layer0_weights.hex",
    parameter THRESHOLDS = "layer0_thresholds.hex"
) (
    input  wire          clk,
    input  wire          rst,      // synchronous: starts a new sample
    input  wire          in_valid,
    input  wire [DW+1:0] in_tok,
    output wire          in_pop,
    output reg           out_push,
    output reg  [DW+1:0] out_tok,
    output reg           done,     // output layer: the decision below is valid
    output reg  [DW-1:0] pred,
    output reg           tie,
    output reg  [DW-1:0] dtime
);
    localparam ROWW = 4 * ((N_IN + 3) / 4);
    localparam RW = $clog2(ROWW);  // a bit position within a weight row
    localparam [RW-1:0] ROW_TOP = ROWW - 1;
    localparam AW = (N_OUT > 1) ? $clog2(N_OUT) : 1;
    localparam JW = $clog2(N_OUT + 1);
    localparam CNTW = $clog2(K + 1);
    localparam VW = (PW > CNTW + 1) ? PW : CNTW + 1;   // potentials (and a pass's sum)
    localparam CMPW = ((VW > 16) ? VW : 16) + 1;       // threshold comparison
    localparam [1:0] SPIKE = 2'd0, STEP = 2'd1, END = 2'd2;
    localparam [1:0] S_COLLECT = 2'd0, S_PASS = 2'd1, S_FINISH = 2'd2, S_IDLE = 2'd3;
    localparam signed [VW-1:0] PLUS = 1, MINUS = -1, ZERO = 0;
    localparam [JW-1:0] LAST = N_OUT;
    localparam [CNTW-1:0] KC = K;

    reg [ROWW-1:0] wmem [0:N_OUT-1];
    reg [15:0]     tmem [0:N_OUT-1];
    reg [VW-1:0]   vmem [0:N_OUT-1];
    reg            fmem [0:N_OUT-1];
    initial begin
        $readmemh(WEIGHTS, wmem);
        $readmemh(THRESHOLDS, tmem);
    end

    reg [1:0]      state;
    reg            final_pass;  // this pass ends step cur_t: apply the threshold test
    reg            readout;     // output layer, END without a decision: read potentials
    reg            first;       // no pass yet in this sample: stored V and F are stale
    reg            dirty;       // spikes arrived in the current step
    reg            emitted;     // a neuron fired in the current step
    reg [DW-1:0]   cur_t;
    reg [CNTW-1:0] cnt;         // spikes collected for the next pass
    reg [RW-1:0]   slot [0:K-1];
    reg [JW-1:0]   j;           // stage A: neuron whose memories are read
    reg            bvalid;      // stage B: neuron bj's words are in the read registers
    reg [AW-1:0]   bj;
    reg [ROWW-1:0] wrow;
    reg [15:0]     thr;
    reg [VW-1:0]   vrd;
    reg            frd;
    reg            anyc;        // output layer: a candidate has been seen
    reg            btie;
    reg [AW-1:0]   best_j;
    reg signed [VW-1:0] best_v;

    wire [1:0]    kind = in_tok[DW+1:DW];
    wire [DW-1:0] payload = in_tok[DW-1:0];
    assign in_pop = (state == S_COLLECT) && in_valid;

    // Stage A: synchronous reads (block RAM).
    wire          issue = (state == S_PASS) && (j != LAST);
    wire [AW-1:0] addr = j[AW-1:0];
    always @(posedge clk) if (issue) wrow <= wmem[addr];
    always @(posedge clk) if (issue) thr <= tmem[addr];
    always @(posedge clk) if (issue) vrd <= vmem[addr];
    always @(posedge clk) if (issue) frd <= fmem[addr];

    // Stage B: add the collected spikes' weights, test the threshold.
    reg signed [VW-1:0] delta;
    integer k;
    always @* begin
        delta = ZERO;
        for (k = 0; k < K; k = k + 1)
            if (k < cnt) delta = delta + (wrow[slot[k]] ? PLUS : MINUS);
    end
    wire signed [VW-1:0] vold = first ? ZERO : $signed(vrd);
    wire                 fold = first ? 1'b0 : frd;
    wire signed [VW-1:0] vnew = readout ? vold : vold + delta;
    wire signed [CMPW-1:0] vcmp = {{(CMPW - VW){vnew[VW-1]}}, vnew};
    wire signed [CMPW-1:0] tcmp = {{(CMPW - 16){1'b0}}, thr};
    wire fire = bvalid && final_pass && !fold && (vcmp >= tcmp);
    wire cand = bvalid && (readout || fire);

    always @(posedge clk) begin
        if (bvalid && !readout) begin
            vmem[bj] <= vnew;
            fmem[bj] <= fold | fire;
        end
    end

    always @(posedge clk) begin
        if (rst) begin
            state <= S_COLLECT;
            final_pass <= 1'b0;
            readout <= 1'b0;
            first <= 1'b1;
            dirty <= 1'b0;
            emitted <= 1'b0;
            cur_t <= {DW{1'b0}};
            cnt <= {CNTW{1'b0}};
            j <= {JW{1'b0}};
            bvalid <= 1'b0;
            bj <= {AW{1'b0}};
            anyc <= 1'b0;
            btie <= 1'b0;
            best_j <= {AW{1'b0}};
            best_v <= ZERO;
            out_push <= 1'b0;
            out_tok <= {(DW + 2){1'b0}};
            done <= 1'b0;
            pred <= {DW{1'b0}};
            tie <= 1'b0;
            dtime <= {DW{1'b0}};
        end else begin
            out_push <= 1'b0;
            bvalid <= issue;
            bj <= addr;
            if (cand) begin
                if (!anyc || vnew > best_v) begin
                    anyc <= 1'b1;
                    best_v <= vnew;
                    best_j <= bj;
                    btie <= 1'b0;
                end else if (vnew == best_v) begin
                    btie <= 1'b1;
                end
            end
            if (fire && IS_OUTPUT == 0) begin
                out_push <= 1'b1;
                out_tok <= {SPIKE, {(DW - AW){1'b0}}, bj};
                emitted <= 1'b1;
            end
            case (state)
                S_COLLECT: if (in_valid) begin
                    j <= {JW{1'b0}};
                    if (kind == SPIKE) begin
                        cnt <= cnt + 1'b1;
                        dirty <= 1'b1;
                        final_pass <= 1'b0;
                        if (cnt + 1'b1 == KC) state <= S_PASS;
                    end else if (kind == STEP) begin
                        if (dirty) begin
                            final_pass <= 1'b1;
                            cur_t <= payload;
                            state <= S_PASS;
                        end
                    end else if (IS_OUTPUT != 0) begin
                        readout <= 1'b1;
                        final_pass <= 1'b0;
                        state <= S_PASS;
                    end else begin
                        out_push <= 1'b1;
                        out_tok <= {END, {DW{1'b0}}};
                        state <= S_IDLE;
                    end
                end
                S_PASS: begin
                    if (j != LAST) j <= j + 1'b1;
                    else state <= S_FINISH;
                end
                S_FINISH: begin
                    cnt <= {CNTW{1'b0}};
                    first <= 1'b0;
                    state <= S_COLLECT;
                    if (readout) begin
                        done <= 1'b1;
                        pred <= {{(DW - AW){1'b0}}, best_j};
                        tie <= btie;
                        dtime <= T_MAX[DW-1:0];
                        state <= S_IDLE;
                    end else if (final_pass) begin
                        dirty <= 1'b0;
                        emitted <= 1'b0;
                        if (IS_OUTPUT != 0 && anyc) begin
                            done <= 1'b1;
                            pred <= {{(DW - AW){1'b0}}, best_j};
                            tie <= btie;
                            dtime <= cur_t;
                            state <= S_IDLE;
                        end else if (IS_OUTPUT == 0 && emitted) begin
                            out_push <= 1'b1;
                            out_tok <= {STEP, cur_t};
                        end
                    end
                end
                default: ;
            endcase
        end
    end

    // New spikes shift into the slots (their order does not matter: a pass adds them all).
    always @(posedge clk) begin
        if (state == S_COLLECT && in_valid && kind == SPIKE) begin
            for (k = K - 1; k > 0; k = k - 1) slot[k] <= slot[k - 1];
            slot[0] <= ROW_TOP - payload[RW-1:0];  // bit position of input i in a row
        end
    end
endmodule

`default_nettype wire
